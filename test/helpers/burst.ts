import { sql } from "./db";
import { Buyer, claim, ClaimReply, saleState, sleep } from "./sale";

/** A burst of claims and what must hold after it, shared by the outage and cluster tests. */

const FINAL = new Set(["GRANTED", "SOLD_OUT", "ALREADY_HOLDING"]);

export interface Burst {
	replies: ClaimReply[];
	grantedAt: number[];
}

/**
 * Every buyer claims once and, on 503, again after a pause, until a final answer; `connections`
 * claims in flight at once, spread over the gateways. `onGrant` sees the running count of grants.
 */
export async function burst(urls: string[], product: string, buyers: Buyer[], onGrant: (n: number) => void, connections = 64): Promise<Burst> {
	const replies: ClaimReply[] = [];
	const grantedAt: number[] = [];
	let next = 0;
	const worker = async (w: number) => {
		for (;;) {
			const i = next++;
			if (i >= buyers.length) return;
			for (let attempt = 0; ; attempt++) {
				const r = await claim(urls[(i + attempt + w) % urls.length], product, buyers[i]);
				replies.push(r);
				if (r.type === "GRANTED") {
					grantedAt.push(Date.now());
					onGrant(grantedAt.length);
				}
				if (FINAL.has(r.type ?? "") || r.status !== 503) break;
				if (attempt > 200) throw new Error(`buyer ${buyers[i].id} never got a final answer`);
				await sleep(300); // within CLAIM_RATE_PER_SECOND
			}
		}
	};
	await Promise.all(Array.from({ length: connections }, (_, w) => worker(w)));
	return { replies, grantedAt };
}

/** What must hold after any outage: no 5xx but 503, every GRANTED durable, exactly `stock` granted. */
export async function expectSaleHeld(db: string, product: string, stock: number, b: Burst) {
	expect(b.replies.filter(r => r.status >= 500 && r.status !== 503).map(r => [r.status, r.type])).toEqual([]);
	expect(b.replies.filter(r => r.status === 404).map(r => [r.status, r.type])).toEqual([]);
	for (const r of b.replies.filter(r => r.status === 503)) expect(r.retryAfter).toMatch(/^\d+$/);
	// An outage may lose an answer, never a grant: a buyer whose GRANTED answer was lost on the way
	// hears ALREADY_HOLDING with the same slot when asking again. Either way the slot is durable.
	const holding = b.replies.filter(r => r.type === "GRANTED" || r.type === "ALREADY_HOLDING");
	const rows = await sql<{ id: string; user_id: string; status: string }>(db, "SELECT id, user_id, status FROM slots WHERE id = ANY($1::bigint[])", [holding.map(g => g.body.slot?.id ?? g.body.data.slot.id)]);
	const byId = new Map(rows.map(r => [String(r.id), r]));
	for (const g of holding) expect(byId.get(g.body.slot?.id ?? g.body.data.slot.id)).toMatchObject({ user_id: g.buyer, status: "HELD" });
	expect(await saleState(db, product)).toMatchObject({ stock, held: stock, available: 0, distinctHolders: stock, maxActivePerBuyer: 1 });
	// A holder who never heard GRANTED or ALREADY_HOLDING lost that answer to the outage (a 503), then
	// asked again once the gateways knew the sale sold out, and heard SOLD_OUT from their fast path.
	// The slot is in the buyer's list; never was a grant made without a claim that failed or won.
	const heard = new Set(holding.map(g => g.buyer));
	const holders = await sql<{ user_id: string }>(db, "SELECT user_id FROM slots WHERE product_id = $1 AND status = 'HELD'", [product]);
	for (const h of holders.filter(h => !heard.has(String(h.user_id))))
		expect(b.replies.filter(r => r.buyer === String(h.user_id)).map(r => r.status)).toContain(503);
}

