import { api } from "../helpers/http";
import { sql } from "../helpers/db";
import { startNode, waitFor } from "../helpers/nodes";
import { storeForFile } from "../helpers/store";
import { claim, createSale, markPaidByHand, saleState, seedBuyers, sleep, slotStatus } from "../helpers/sale";
import { asAdmin } from "../helpers/identity";

/** Expiry and reclaim on short clocks: a 2 s slot, a 200 ms sweep. Times are asserted as windows. */
const store = storeForFile("lifecycle", {
	SLOT_TTL_SECONDS: "2",
	SLOT_REMINDER_BEFORE_SECONDS: "1",
	SLOT_SWEEP_INTERVAL_MS: "200",
	// A long lease: a buyer who gets the reclaimed unit shows the sold-out flag was withdrawn, not lapsed.
	SOLD_OUT_LEASE_MS: "60000",
});
const DB = store.db;
const env = store.env;

const statusOf = (slotId: string) => slotStatus(DB, slotId);

describe("expiry and reclaim", () => {
	it("expires an unpaid slot in its window, keeps it in the buyer's list, and sells the unit again", async () => {
		const product = await createSale(DB, 1);
		const [first, second] = await seedBuyers(DB, 2, "exp");
		const g = await claim(store.node.url, product, first);
		expect(g.type).toBe("GRANTED");
		const expiresAt = Date.parse(g.body.slot.expiresAt);
		expect(expiresAt - Date.parse(g.body.slot.heldAt)).toBe(2000);
		// Sold out, and the gateway holds the flag.
		expect((await claim(store.node.url, product, second)).type).toBe("SOLD_OUT");
		await waitFor("the gateway's flag", async () => (await claim(store.node.url, product, second)).epoch === undefined);

		// Not before expiresAt...
		while (Date.now() < expiresAt - 150) {
			expect(await statusOf(g.body.slot.id)).toBe("HELD");
			await sleep(100);
		}
		// ...and by expiresAt + one sweep + slack.
		await waitFor("the expiry", async () => (await statusOf(g.body.slot.id)) === "EXPIRED", 4000);
		expect(Date.now()).toBeLessThan(expiresAt + 2500);

		const mine = await api(store.node.url).get("/api/me/slots", first.token);
		expect(mine.body.slots).toEqual([expect.objectContaining({ id: g.body.slot.id, status: "EXPIRED" })]);
		expect(await saleState(DB, product)).toMatchObject({ stock: 1, available: 1, held: 0 });

		// The sold-out answer is withdrawn (the lease alone would hold for a minute): the next claimant gets the unit.
		let again = await claim(store.node.url, product, second);
		for (let i = 0; i < 20 && again.type !== "GRANTED"; i++) {
			await sleep(100);
			again = await claim(store.node.url, product, second);
		}
		expect(again.type).toBe("GRANTED");
		expect(again.epoch).toBeGreaterThan(g.epoch!);
		expect(await saleState(DB, product)).toMatchObject({ stock: 1, available: 0, held: 1 });
	});

	it("never expires a paid slot", async () => {
		const product = await createSale(DB, 1);
		const [b] = await seedBuyers(DB, 1, "paid");
		const g = await claim(store.node.url, product, b);
		await markPaidByHand(DB, g.body.slot.id);
		await sleep(2600);
		expect(await statusOf(g.body.slot.id)).toBe("PAID");
	});

	it("reclaims each expired slot once when two nodes sweep at the same time", async () => {
		const other = await startNode(env);
		try {
			const product = await createSale(DB, 60);
			const buyers = await seedBuyers(DB, 60, "race");
			const replies = await Promise.all(buyers.map(b => claim(store.node.url, product, b)));
			expect(replies.every(r => r.type === "GRANTED")).toBe(true);
			await sql(DB, "UPDATE slots SET expires_at = now() - interval '1 second' WHERE product_id = $1 AND status = 'HELD'", [product]);
			const [a, b] = await Promise.all([store.node.broker.call("slots.sweep", {}, { nodeID: store.node.broker.nodeID }), other.broker.call("slots.sweep", {})]);
			const rows = await sql<{ status: string; n: number }>(DB, "SELECT status, count(*)::int AS n FROM slots WHERE product_id = $1 GROUP BY status ORDER BY status", [product]);
			expect(rows).toEqual([{ status: "AVAILABLE", n: 60 }, { status: "EXPIRED", n: 60 }]);
			expect((a as { reclaimed: number }).reclaimed + (b as { reclaimed: number }).reclaimed).toBeLessThanOrEqual(60);
			const [live] = await sql<{ units: number; rows: number }>(DB, "SELECT count(DISTINCT unit)::int AS units, count(*)::int AS rows FROM slots WHERE product_id = $1 AND status <> 'EXPIRED'", [product]);
			expect(live).toEqual({ units: 60, rows: 60 });
		} finally {
			await other.stop();
		}
	});

	it("lets an operator expire a slot now (slots.expire)", async () => {
		const product = await createSale(DB, 1);
		const [b] = await seedBuyers(DB, 1, "ops");
		const g = await claim(store.node.url, product, b);
		const r = await store.node.broker.call("slots.expire", { slotId: g.body.slot.id }, asAdmin(store.node.broker));
		expect(r).toEqual({ expired: true });
		expect(await statusOf(g.body.slot.id)).toBe("EXPIRED");
		expect(await store.node.broker.call("slots.expire", { slotId: g.body.slot.id }, asAdmin(store.node.broker))).toEqual({ expired: false });
	});
});
