import http from "node:http";
import { Client } from "pg";
import { seedBuyers as seedInBulk } from "../../bench/lib/seed";
import { observe, ObservedAnswer } from "../../lib/order-check";
import { TEST_SECRET } from "./nodes";
import { createUnits } from "../../store/slots";
import { expireAndReclaim } from "../../store/slots";

export interface Buyer {
	id: string;
	token: string;
}

async function withClient<T>(url: string, work: (c: Client) => Promise<T>): Promise<T> {
	const c = new Client({ connectionString: url });
	await c.connect();
	try {
		return await work(c);
	} finally {
		await c.end();
	}
}

/** `n` buyers straight in the database (the load tool's seeding, no sign-up hashing), with access tokens minted for them. */
export function seedBuyers(url: string, n: number, prefix: string): Promise<Buyer[]> {
	return seedInBulk(url, n, prefix, TEST_SECRET, { passwordHash: "not-a-hash", emailDomain: "example.com" });
}

/** A product and its slot rows, as products.create makes them, straight in the database. */
export async function createSale(url: string, stock: number, saleAt = new Date(Date.now() - 1000)): Promise<string> {
	return withClient(url, async c => {
		const { rows } = await c.query(`INSERT INTO products (name, price, stock, sale_at) VALUES ('Test drop', 1000, $1, $2) RETURNING id`, [stock, saleAt]);
		const id = String(rows[0].id);
		await createUnits(c, id, stock);
		return id;
	});
}

/**
 * Expires one HELD slot now and gives its unit a fresh AVAILABLE row, with the slots service's own
 * statement, and tells nobody (as a reclaim whose broadcast was lost). Returns whether it expired.
 */
export async function reclaimSlot(url: string, slotId: string): Promise<boolean> {
	return withClient(url, async c => {
		// The statement skips a row someone holds locked (the job scheduler, for a moment): try again then.
		for (let attempt = 0; attempt < 50; attempt++) {
			await c.query("BEGIN");
			try {
				const rows = await expireAndReclaim({ query: (text, values) => c.query(text, values as unknown[]).then(r => r.rows) }, { slotId, evenIfNotDue: true });
				await c.query("COMMIT");
				if (rows.length === 1) return true;
			} catch (err) {
				await c.query("ROLLBACK");
				throw err;
			}
			const { rows } = await c.query("SELECT status FROM slots WHERE id = $1", [slotId]);
			if (rows[0]?.status !== "HELD") return false;
			await sleep(50);
		}
		return false;
	});
}

export interface ClaimReply extends ObservedAnswer {
	status: number;
	body: any;
	retryAfter: string | null;
	buyer: string;
	ms: number;
}

/**
 * Claims go out over a pool of kept-alive connections, as a browser crowd behind a few proxies or a
 * load tool would send them: thousands of claims "at once" queue for 128 sockets instead of opening
 * 2,000 connections, which on a slow machine fails at connect time, not at the store.
 */
const claimAgent = new http.Agent({
	keepAlive: true,
	maxSockets: 128,
	// An idle socket is dropped after 4 s, before HAProxy's `timeout http-keep-alive` (10 s) closes it
	// from its side: a claim sent just as that close arrives would meet "socket hang up" (CI saw it
	// once, in cluster-ha, after a long wait for mails between two bursts).
	timeout: 4_000,
});

function postOnce(url: string, token: string): Promise<{ status: number; text: string; retryAfter: string | null }> {
	return new Promise((resolve, reject) => {
		const req = http.request(url, { method: "POST", agent: claimAgent, headers: { authorization: `Bearer ${token}`, "content-length": "0" } }, res => {
			let text = "";
			res.setEncoding("utf8");
			res.on("data", chunk => (text += chunk));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, text, retryAfter: (res.headers["retry-after"] as string | undefined) ?? null }));
			res.on("error", reject);
		});
		req.on("error", err => reject(Object.assign(err, { reusedSocket: req.reusedSocket })));
		req.end();
	});
}

/**
 * A kept-alive socket the other side closed before any answer came is tried once more on a fresh
 * one, as browsers do (and Node's docs advise, see `request.reusedSocket`): a claim is safe to send
 * again, the same buyer gets the same slot. Any other error, or one on a fresh socket, is thrown.
 */
async function post(url: string, token: string): Promise<{ status: number; text: string; retryAfter: string | null }> {
	try {
		return await postOnce(url, token);
	} catch (err) {
		const e = err as NodeJS.ErrnoException & { reusedSocket?: boolean };
		if (!e.reusedSocket || (e.code !== "ECONNRESET" && e.message !== "socket hang up")) throw err;
		return postOnce(url, token);
	}
}

export async function claim(base: string, productId: string, buyer: Buyer): Promise<ClaimReply> {
	const t0 = Date.now();
	const res = await post(`${base}/api/products/${productId}/slots`, buyer.token);
	let body: any = null;
	try {
		body = JSON.parse(res.text);
	} catch {
		body = null;
	}
	return { ...observe(res.status, body), status: res.status, body, retryAfter: res.retryAfter, buyer: buyer.id, ms: Date.now() - t0 };
}

export interface SaleState {
	stock: number;
	available: number;
	held: number;
	paid: number;
	distinctHolders: number;
	maxActivePerBuyer: number;
}

/** What PostgreSQL says after a sale: the counts every test checks. */
export async function saleState(url: string, productId: string): Promise<SaleState> {
	return withClient(url, async c => {
		const { rows } = await c.query(
			`SELECT p.stock,
			        count(*) FILTER (WHERE s.status = 'AVAILABLE')::int AS available,
			        count(*) FILTER (WHERE s.status = 'HELD')::int AS held,
			        count(*) FILTER (WHERE s.status = 'PAID')::int AS paid,
			        count(DISTINCT s.user_id) FILTER (WHERE s.status IN ('HELD', 'PAID'))::int AS distinct_holders,
			        coalesce((SELECT max(n) FROM (SELECT count(*) AS n FROM slots x WHERE x.product_id = p.id AND x.status IN ('HELD', 'PAID') GROUP BY x.user_id) m), 0)::int AS max_active
			 FROM products p JOIN slots s ON s.product_id = p.id WHERE p.id = $1 GROUP BY p.id, p.stock`,
			[productId]
		);
		const r = rows[0];
		return { stock: r.stock, available: r.available, held: r.held, paid: r.paid, distinctHolders: r.distinct_holders, maxActivePerBuyer: r.max_active };
	});
}

export function countBy<T>(items: T[], key: (t: T) => string): Record<string, number> {
	const out: Record<string, number> = {};
	for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
	return out;
}

/**
 * Holds the product's next AVAILABLE unit for `userId` by hand, as a committed grant leaves it but
 * with no actor involved (a unit someone else sold, a grant whose node died). `withOutbox` also
 * leaves its "slot granted" outbox row unsent, a minute old, as a crash before the send would.
 */
export async function holdUnitByHand(
	url: string,
	productId: string,
	userId: string,
	o: { expiresIn?: string; withOutbox?: boolean } = {}
): Promise<{ id: string; expires_at: Date }> {
	return withClient(url, async c => {
		const { rows } = await c.query(
			`WITH s AS (UPDATE slots SET status = 'HELD', user_id = $2, held_at = now(), expires_at = now() + $3::interval
			            WHERE id = (SELECT id FROM slots WHERE product_id = $1 AND status = 'AVAILABLE' ORDER BY unit LIMIT 1)
			            RETURNING id, expires_at),
			      o AS (INSERT INTO outbox (topic, slot_id, created_at)
			            SELECT 'slot.granted', id, now() - interval '1 minute' FROM s WHERE $4::boolean)
			 SELECT id, expires_at FROM s`,
			[productId, userId, o.expiresIn ?? "30 minutes", o.withOutbox ?? false]
		);
		if (rows.length !== 1) throw new Error(`no AVAILABLE unit of product ${productId} to hold`);
		return { id: String(rows[0].id), expires_at: rows[0].expires_at };
	});
}

/** Marks a slot PAID by hand, as a confirmed payment leaves it (with no payment row). */
export async function markPaidByHand(url: string, slotId: string): Promise<void> {
	await withClient(url, c => c.query("UPDATE slots SET status = 'PAID', paid_at = now() WHERE id = $1", [slotId]));
}

/** A slot's status as PostgreSQL has it now. */
export async function slotStatus(url: string, slotId: string): Promise<string> {
	return withClient(url, async c => (await c.query("SELECT status FROM slots WHERE id = $1", [slotId])).rows[0].status);
}

export const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
