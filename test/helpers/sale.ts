import { Client } from "pg";
import { signAccessToken } from "../../lib/tokens";
import { observe, ObservedAnswer } from "../../lib/order-check";
import { TEST_SECRET } from "./nodes";

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

/** `n` buyers inserted in one statement (no sign-up hashing), with access tokens minted for them. */
export async function seedBuyers(url: string, n: number, prefix: string): Promise<Buyer[]> {
	return withClient(url, async c => {
		const { rows } = await c.query(
			`INSERT INTO users (login_id, email, password_hash)
			 SELECT $1 || g, $1 || g || '@example.com', 'not-a-hash' FROM generate_series(1, $2::int) AS g
			 RETURNING id`,
			[prefix, n]
		);
		return rows.map(r => ({ id: String(r.id), token: signAccessToken(TEST_SECRET, { sub: String(r.id), role: "buyer" }, 3600) }));
	});
}

/** A product and its slot rows, as products.create makes them, straight in the database. */
export async function createSale(url: string, stock: number, saleAt = new Date(Date.now() - 1000)): Promise<string> {
	return withClient(url, async c => {
		const { rows } = await c.query(`INSERT INTO products (name, price, stock, sale_at) VALUES ('Test drop', 1000, $1, $2) RETURNING id`, [stock, saleAt]);
		const id = String(rows[0].id);
		await c.query(`INSERT INTO slots (product_id, unit) SELECT $1, u FROM generate_series(1, $2::int) AS u`, [id, stock]);
		return id;
	});
}

export interface ClaimReply extends ObservedAnswer {
	status: number;
	body: any;
	retryAfter: string | null;
	buyer: string;
	ms: number;
}

export async function claim(base: string, productId: string, buyer: Buyer): Promise<ClaimReply> {
	const t0 = Date.now();
	const res = await fetch(`${base}/api/products/${productId}/slots`, { method: "POST", headers: { authorization: `Bearer ${buyer.token}` } });
	const body = await res.json().catch(() => null);
	return { ...observe(res.status, body), status: res.status, body, retryAfter: res.headers.get("retry-after"), buyer: buyer.id, ms: Date.now() - t0 };
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

/** A slot's status as PostgreSQL has it now. */
export async function slotStatus(url: string, slotId: string): Promise<string> {
	return withClient(url, async c => (await c.query("SELECT status FROM slots WHERE id = $1", [slotId])).rows[0].status);
}

export const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
