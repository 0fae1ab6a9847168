import { Client } from "pg";
import { api } from "./helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "./helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "./helpers/nodes";
import { Buyer, claim, createSale, seedBuyers, sleep, slotStatus } from "./helpers/sale";

/** Payments over real HTTP and PostgreSQL, on a 3 s slot and a gateway with no latency. */
const DB = freshDatabaseUrl("payments");
let node: StoreNode;
let http: ReturnType<typeof api>;

beforeAll(async () => {
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		SLOT_TTL_SECONDS: "3",
		SLOT_REMINDER_BEFORE_SECONDS: "1",
		SLOT_SWEEP_INTERVAL_MS: "200",
		AGENDA_PROCESS_EVERY_MS: "200",
		PAYMENT_LATENCY_MS: "0",
	});
	http = api(node.url);
});
afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

let keys = 0;
const pay = (b: Buyer, slotId: string, body: Record<string, unknown>, key = `k-${++keys}`) =>
	http.post(`/api/slots/${slotId}/payments`, body, b.token, { "idempotency-key": key });
const confirm = (b: Buyer, paymentId: string) => http.post(`/api/payments/${paymentId}/confirm`, undefined, b.token);

async function holding(label: string, price = 1000) {
	const product = await createSale(DB, 1);
	await sql(DB, "UPDATE products SET price = $2 WHERE id = $1", [product, price]);
	const [b] = await seedBuyers(DB, 1, label);
	const g = await claim(node.url, product, b);
	expect(g.type).toBe("GRANTED");
	return { buyer: b, slotId: g.body.slot.id as string, product };
}

const statusOf = (id: string) => slotStatus(DB, id);

describe("paying for a slot", () => {
	it("initiates a PENDING payment for the product's price, idempotently, and confirms it: slot PAID, receipt sent", async () => {
		const { buyer, slotId, product } = await holding("card", 129000);
		const first = await pay(buyer, slotId, { method: "card", cardNumber: "4242424242424242" }, "same-key");
		expect(first.status).toBe(201);
		expect(first.body.payment).toEqual({ id: expect.any(String), slotId, method: "card", amount: 129000, status: "PENDING" });
		const again = await pay(buyer, slotId, { method: "card", cardNumber: "4242424242424242" }, "same-key");
		expect(again.body.payment.id).toBe(first.body.payment.id);
		expect(await sql(DB, "SELECT id FROM payments WHERE slot_id = $1", [slotId])).toHaveLength(1);

		const ok = await confirm(buyer, first.body.payment.id);
		expect(ok.status).toBe(200);
		expect(ok.body.payment).toMatchObject({ status: "SUCCESS" });
		expect(await statusOf(slotId)).toBe("PAID");
		const twice = await confirm(buyer, first.body.payment.id);
		expect([twice.status, twice.body.payment.status]).toEqual([200, "SUCCESS"]);
		// A buyer who paid gets ALREADY_HOLDING with the PAID slot.
		await waitFor("the actor to hear of the payment", async () => {
			const again = await claim(node.url, product, buyer);
			return again.type === "ALREADY_HOLDING" && again.body.data.slot.status === "PAID";
		}, 3000);
		await waitFor("the receipt", () => node.messages.some(m => m.kind === "payment.receipt" && m.recipient === "card1@example.com"));
		// A paid slot cannot be paid again, and never expires.
		expect((await pay(buyer, slotId, { method: "card", cardNumber: "4242424242424242" })).body.type).toBe("SLOT_NOT_HELD");
		await sleep(3500);
		expect(await statusOf(slotId)).toBe("PAID");
		expect(node.messages.filter(m => m.kind === "slot.reminder" && m.recipient === "card1@example.com")).toHaveLength(0);
		// Its jobs were cancelled.
		expect(await sql(DB, "SELECT id FROM agenda_jobs WHERE data->>'slotId' = $1", [slotId])).toHaveLength(0);
		const list = await http.get("/api/me/payments", buyer.token);
		expect(list.body.payments.map((p: { id: string }) => p.id)).toEqual([first.body.payment.id]);
		expect((await http.get(`/api/payments/${first.body.payment.id}`, buyer.token)).body.payment.status).toBe("SUCCESS");
	});

	it("declines card 4000000000000002 with 402, tells the buyer, keeps the slot HELD, and a retry succeeds", async () => {
		const { buyer, slotId } = await holding("decline");
		const p = await pay(buyer, slotId, { method: "card", cardNumber: "4000000000000002" });
		const no = await confirm(buyer, p.body.payment.id);
		expect(no.status).toBe(402);
		expect(no.body).toMatchObject({ type: "PAYMENT_DECLINED", data: { payment: { status: "FAILED", failureReason: "PAYMENT_DECLINED" } } });
		expect(await statusOf(slotId)).toBe("HELD");
		await waitFor("the failure message", () => node.messages.some(m => m.kind === "payment.failed" && m.recipient === "decline1@example.com"));
		expect((await confirm(buyer, p.body.payment.id)).body.type).toBe("PAYMENT_FAILED");
		const retry = await pay(buyer, slotId, { method: "easypay", provider: "toss" });
		expect((await confirm(buyer, retry.body.payment.id)).body.payment.status).toBe("SUCCESS");
		expect(await statusOf(slotId)).toBe("PAID");
	});

	it("pays with points within the balance and lowers it; declines over it", async () => {
		const cheap = await holding("points", 30000);
		const ok = await pay(cheap.buyer, cheap.slotId, { method: "points" });
		const done = await confirm(cheap.buyer, ok.body.payment.id);
		expect([done.status, done.body.payment?.status, done.body.type]).toEqual([200, "SUCCESS", undefined]);
		expect((await sql<{ points: number }>(DB, "SELECT points FROM users WHERE id = $1", [cheap.buyer.id]))[0].points).toBe(70000);

		const dear = await holding("rich", 150000);
		const no = await pay(dear.buyer, dear.slotId, { method: "points" });
		expect((await confirm(dear.buyer, no.body.payment.id)).status).toBe(402);
		expect((await sql<{ points: number }>(DB, "SELECT points FROM users WHERE id = $1", [dear.buyer.id]))[0].points).toBe(100000);
	});

	it("spends a points balance once when two points payments are confirmed at once", async () => {
		const [b] = await seedBuyers(DB, 1, "twice");
		const slots: string[] = [];
		for (let i = 0; i < 2; i++) {
			const product = await createSale(DB, 1);
			await sql(DB, "UPDATE products SET price = 60000 WHERE id = $1", [product]);
			slots.push((await claim(node.url, product, b)).body.slot.id);
		}
		const started = await Promise.all(slots.map(id => pay(b, id, { method: "points" })));
		const done = await Promise.all(started.map(p => confirm(b, p.body.payment.id)));
		expect(done.map(d => d.status).sort()).toEqual([200, 402]);
		expect((await sql<{ points: number }>(DB, "SELECT points FROM users WHERE id = $1", [b.id]))[0].points).toBe(40000);
		const statuses = await Promise.all(slots.map(statusOf));
		expect(statuses.sort()).toEqual(["HELD", "PAID"]);
	});

	it("keeps other buyers out: someone else's slot or payment is not found", async () => {
		const { buyer, slotId } = await holding("owner");
		const [stranger] = await seedBuyers(DB, 1, "stranger");
		expect((await pay(stranger, slotId, { method: "points" })).status).toBe(404);
		const p = await pay(buyer, slotId, { method: "points" });
		expect((await confirm(stranger, p.body.payment.id)).status).toBe(404);
		expect((await http.get(`/api/payments/${p.body.payment.id}`, stranger.token)).status).toBe(404);
		expect((await http.post(`/api/payments/${p.body.payment.id}/confirm`)).status).toBe(401);
	});

	it("rejects bad input with clear 4xx", async () => {
		const { buyer, slotId } = await holding("bad");
		expect((await http.post(`/api/slots/${slotId}/payments`, { method: "card", cardNumber: "4242424242424242" }, buyer.token)).body.type).toBe("IDEMPOTENCY_KEY_REQUIRED");
		expect((await pay(buyer, slotId, { method: "bitcoin" })).status).toBe(422);
		expect((await pay(buyer, slotId, { method: "card", cardNumber: "12" })).status).toBe(422);
		expect((await pay(buyer, slotId, { method: "easypay", provider: "paypal" })).status).toBe(422);
		expect((await pay(buyer, "abc", { method: "points" })).status).toBe(404);
		const used = await pay(buyer, slotId, { method: "points" }, "key-x");
		const other = await holding("bad2");
		expect((await pay(other.buyer, other.slotId, { method: "points" }, "key-x")).status).toBe(201); // keys are per buyer
		void used;
	});

	it("answers 410 SLOT_EXPIRED for a slot that expired, before or after the payment started", async () => {
		const late = await holding("late");
		const p = await pay(late.buyer, late.slotId, { method: "points" });
		await waitFor("the expiry", async () => (await statusOf(late.slotId)) === "EXPIRED", 6000);
		const r = await confirm(late.buyer, p.body.payment.id);
		expect(r.status).toBe(410);
		expect(r.body).toMatchObject({ type: "SLOT_EXPIRED", data: { payment: { status: "FAILED", failureReason: "SLOT_EXPIRED" } } });
		expect((await pay(late.buyer, late.slotId, { method: "points" })).status).toBe(410);
		expect(await statusOf(late.slotId)).toBe("EXPIRED");
	});
});

describe("the race between paying and expiring", () => {
	it("lets exactly one side win for each of 200 slots, and both sides win some", async () => {
		const product = await createSale(DB, 200);
		const buyers = await seedBuyers(DB, 200, "race");
		const grants = await Promise.all(buyers.map(b => claim(node.url, product, b)));
		expect(grants.every(g => g.type === "GRANTED")).toBe(true);
		const payments = await Promise.all(buyers.map((b, i) => pay(b, grants[i].body.slot.id, { method: "card", cardNumber: "4242424242424242" })));
		// Expiries spread over the next second; confirms and sweeps all land in the middle of it.
		await sql(DB, "UPDATE slots SET expires_at = now() + (interval '5 milliseconds' * (unit + 100)) WHERE product_id = $1", [product]);
		await sleep(600);
		const sweeper = new Client({ connectionString: DB });
		await sweeper.connect();
		const sweeps = (async () => {
			for (let i = 0; i < 10; i++) {
				await node.broker.call("slots.sweep", {});
				await sleep(50);
			}
		})();
		const answers = await Promise.all(buyers.map((b, i) => confirm(b, payments[i].body.payment.id)));
		await sweeps;
		await sweeper.end();
		await sleep(1500);
		await node.broker.call("slots.sweep", {});
		const statuses = answers.map(a => a.status);
		expect(statuses.filter(s => s !== 200 && s !== 410)).toEqual([]);
		const won = statuses.filter(s => s === 200).length;
		expect(won).toBeGreaterThan(0);
		expect(won).toBeLessThan(200);

		const rows = await sql<{ slot_status: string; payment_status: string; reason: string | null }>(
			DB,
			`SELECT s.status AS slot_status, p.status AS payment_status, p.failure_reason AS reason
			 FROM payments p JOIN slots s ON s.id = p.slot_id WHERE s.product_id = $1`,
			[product]
		);
		expect(rows).toHaveLength(200);
		for (const r of rows) {
			// Never a payment on an expired slot, never an expired paid slot.
			if (r.payment_status === "SUCCESS") expect(r.slot_status).toBe("PAID");
			else expect([r.slot_status, r.payment_status, r.reason]).toEqual(["EXPIRED", "FAILED", "SLOT_EXPIRED"]);
		}
		expect(rows.filter(r => r.payment_status === "SUCCESS")).toHaveLength(won);
		// AVAILABLE + HELD + PAID = stock: every expired unit came back.
		const [live] = await sql<{ n: number; paid: number; free: number }>(
			DB,
			`SELECT count(*) FILTER (WHERE status <> 'EXPIRED')::int AS n, count(*) FILTER (WHERE status = 'PAID')::int AS paid,
			        count(*) FILTER (WHERE status = 'AVAILABLE')::int AS free FROM slots WHERE product_id = $1`,
			[product]
		);
		expect(live).toEqual({ n: 200, paid: won, free: 200 - won });
	});
});
