import { checkOrder } from "../../lib/order-check";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET } from "../helpers/nodes";
import { claim, ClaimReply, createSale, seedBuyers } from "../helpers/sale";

/**
 * One place in line per buyer (issue 23, point 3): 500 buyers each press "buy" 4 times at once,
 * 2 claims through each of 2 gateways. A buyer's repeated claims take no new place: the gateway
 * joins the ones in flight from it, the actor joins the rest at its door (and answers a holder
 * with the grant's own place). So each buyer's answers carry exactly one (epoch, seq) and agree,
 * and the actor numbered 500 claims, not 2,000.
 */
const DB = freshDatabaseUrl("oneplace");
const NS = freshNamespace("oneplace");
const nodes: StoreNode[] = [];
const BUYERS = 500;

beforeAll(async () => {
	const env = (id: string, services: string) => ({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: NS, NODE_ID: id, SERVICES: services, CLAIM_RATE_PER_SECOND: "100" });
	nodes.push(await startNode(env(`${NS}-core`, "users,products,allocator,slots,payments,notifier,sales")));
	nodes.push(await startNode(env(`${NS}-gw1`, "api")));
	nodes.push(await startNode(env(`${NS}-gw2`, "api")));
}, 60_000);
afterAll(async () => {
	for (const n of nodes.reverse()) await n.stop();
	await dropDatabase(DB);
});

it("500 buyers x 4 simultaneous claims across 2 gateways: one seq per buyer, answers that agree, one slot each", async () => {
	const product = await createSale(DB, BUYERS);
	const buyers = await seedBuyers(DB, BUYERS, "tabs");
	const [gw1, gw2] = [nodes[1].url, nodes[2].url];
	const replies: ClaimReply[] = await Promise.all(buyers.flatMap(b => [claim(gw1, product, b), claim(gw2, product, b), claim(gw1, product, b), claim(gw2, product, b)]));

	const byBuyer = new Map<string, ClaimReply[]>();
	for (const r of replies) byBuyer.set(r.buyer, [...(byBuyer.get(r.buyer) ?? []), r]);
	expect(byBuyer.size).toBe(BUYERS);
	for (const [buyer, rs] of byBuyer) {
		// Every answer names the buyer's one slot and one place in line.
		expect({ buyer, types: [...new Set(rs.map(r => r.type))].filter(t => t !== "GRANTED" && t !== "ALREADY_HOLDING") }).toEqual({ buyer, types: [] });
		expect(rs.filter(r => r.type === "GRANTED").length).toBeGreaterThanOrEqual(1);
		const places = new Set(rs.map(r => `${r.epoch}/${r.seq}`));
		expect({ buyer, places: places.size }).toEqual({ buyer, places: 1 });
		const slots = new Set(rs.map(r => r.body?.slot?.id ?? r.body?.data?.slot?.id));
		expect({ buyer, slots: slots.size }).toEqual({ buyer, slots: 1 });
	}
	expect(checkOrder(replies.map(r => ({ type: r.type, epoch: r.epoch, seq: r.seq, buyer: r.buyer })))).toMatchObject({ ok: true });

	// PostgreSQL: one held slot per buyer, and the places in line are 500 distinct ones (no click took a second).
	const rows = await sql<{ user_id: string; epoch: number; seq: string }>(DB, `SELECT user_id, epoch, seq FROM slots WHERE product_id = $1 AND status = 'HELD'`, [product]);
	expect(rows.length).toBe(BUYERS);
	expect(new Set(rows.map(r => r.user_id)).size).toBe(BUYERS);
	const lastEpoch = Math.max(...rows.map(r => r.epoch));
	const inLast = rows.filter(r => r.epoch === lastEpoch).map(r => Number(r.seq));
	expect(Math.max(...inLast)).toBeLessThanOrEqual(BUYERS);
}, 120_000);
