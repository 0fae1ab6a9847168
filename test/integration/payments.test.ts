import { createHash } from "node:crypto";
import { Client } from "pg";
import { KeyedRequestHash1732860000000 } from "../../entities/migrations/1732860000000-KeyedRequestHash";
import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { Buyer, claim, createSale, seedBuyers, sleep, slotStatus } from "../helpers/sale";
import { asAdmin } from "../helpers/identity";
import { PAYMENT_METHODS } from "../../services/payments/index";
import { countCharges } from "../helpers/gateway";

/**
 * Payments over real HTTP and PostgreSQL, with a gateway of no latency. Slots last a minute, so no
 * setup races an expiry on a slow machine; a test that needs a slot to expire says so in SQL
 * (expires_at) and lets the 200 ms sweep act.
 */
const DB = freshDatabaseUrl("payments");
let node: StoreNode;
let http: ReturnType<typeof api>;

beforeAll(async () => {
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		SLOT_TTL_SECONDS: "60",
		SLOT_REMINDER_BEFORE_SECONDS: "30",
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

/** A setup step: the payment must start (201), or the test fails here with what the store said. */
async function started(b: Buyer, slotId: string, body: Record<string, unknown>): Promise<string> {
	const r = await pay(b, slotId, body);
	if (r.status !== 201) throw new Error(`starting a payment for slot ${slotId} answered ${r.status}: ${r.text}`);
	return r.body.payment.id;
}

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
	it("lists the methods from the registry, without a login (issue 24, point 2)", async () => {
		const r = await http.get("/api/payment-methods");
		expect(r.status).toBe(200);
		expect(r.body.methods).toEqual(PAYMENT_METHODS.map(m => ({ method: m.method, names: m.names, spendsPoints: m.spendsPoints, inputs: m.inputs })));
		// Each method's own fields, as the page draws them: the card's number, easy pay's provider list.
		expect(r.body.methods.map((m: { inputs: { name: string }[] }) => m.inputs.map(i => i.name))).toEqual([["cardNumber"], [], ["provider"]]);
		expect(r.body.methods.map((m: { method: string }) => m.method)).toEqual(["card", "points", "easypay"]);
	});

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
		// A paid slot cannot be paid again, and never expires, not even once past its time.
		expect((await pay(buyer, slotId, { method: "card", cardNumber: "4242424242424242" })).body.type).toBe("SLOT_NOT_HELD");
		await sql(DB, "UPDATE slots SET expires_at = now() - interval '1 second' WHERE id = $1", [slotId]);
		await node.broker.call("slots.sweep", {});
		await node.broker.call("slots.expire", { slotId }, asAdmin(node.broker));
		expect(await statusOf(slotId)).toBe("PAID");
		expect(node.messages.filter(m => m.kind === "slot.reminder" && m.recipient === "card1@example.com")).toHaveLength(0);
		// Its jobs were cancelled.
		await waitFor("its jobs to be cancelled", async () => (await sql(DB, "SELECT id FROM agenda_jobs WHERE data->>'slotId' = $1", [slotId])).length === 0);
		const list = await http.get("/api/me/payments", buyer.token);
		expect(list.body.payments.map((p: { id: string }) => p.id)).toEqual([first.body.payment.id]);
		expect((await http.get(`/api/payments/${first.body.payment.id}`, buyer.token)).body.payment.status).toBe("SUCCESS");
	});

	it("declines card 4000000000000002 with 402, tells the buyer, keeps the slot HELD, and a retry succeeds", async () => {
		const { buyer, slotId } = await holding("decline");
		const paymentId = await started(buyer, slotId, { method: "card", cardNumber: "4000000000000002" });
		const no = await confirm(buyer, paymentId);
		expect(no.status).toBe(402);
		expect(no.body).toMatchObject({ type: "PAYMENT_DECLINED", data: { payment: { status: "FAILED", failureReason: "PAYMENT_DECLINED" } } });
		expect(await statusOf(slotId)).toBe("HELD");
		await waitFor("the failure message", () => node.messages.some(m => m.kind === "payment.failed" && m.recipient === "decline1@example.com"));
		expect((await confirm(buyer, paymentId)).body.type).toBe("PAYMENT_FAILED");
		const retry = await started(buyer, slotId, { method: "easypay", provider: "toss" });
		expect((await confirm(buyer, retry)).body.payment.status).toBe("SUCCESS");
		expect(await statusOf(slotId)).toBe("PAID");
	});

	it("pays with points within the balance and lowers it; declines over it", async () => {
		const cheap = await holding("points", 30000);
		const ok = await started(cheap.buyer, cheap.slotId, { method: "points" });
		const done = await confirm(cheap.buyer, ok);
		expect([done.status, done.body.payment?.status, done.body.type]).toEqual([200, "SUCCESS", undefined]);
		expect((await sql<{ points: number }>(DB, "SELECT points FROM users WHERE id = $1", [cheap.buyer.id]))[0].points).toBe(70000);

		const dear = await holding("rich", 150000);
		const no = await started(dear.buyer, dear.slotId, { method: "points" });
		expect((await confirm(dear.buyer, no)).status).toBe(402);
		expect((await sql<{ points: number }>(DB, "SELECT points FROM users WHERE id = $1", [dear.buyer.id]))[0].points).toBe(100000);
	});

	it("spends a points balance once when two points payments are confirmed at once", async () => {
		const [b] = await seedBuyers(DB, 1, "twice");
		const slots: string[] = [];
		for (let i = 0; i < 2; i++) {
			const product = await createSale(DB, 1);
			await sql(DB, "UPDATE products SET price = 60000 WHERE id = $1", [product]);
			const g = await claim(node.url, product, b);
			expect(g.type).toBe("GRANTED");
			slots.push(g.body.slot.id);
		}
		const payments = await Promise.all(slots.map(id => started(b, id, { method: "points" })));
		const done = await Promise.all(payments.map(id => confirm(b, id)));
		expect(done.map(d => d.status).sort()).toEqual([200, 402]);
		expect((await sql<{ points: number }>(DB, "SELECT points FROM users WHERE id = $1", [b.id]))[0].points).toBe(40000);
		const statuses = await Promise.all(slots.map(statusOf));
		expect(statuses.sort()).toEqual(["HELD", "PAID"]);
	});

	it("keeps other buyers out: someone else's slot or payment is not found", async () => {
		const { buyer, slotId } = await holding("owner");
		const [stranger] = await seedBuyers(DB, 1, "stranger");
		expect((await pay(stranger, slotId, { method: "points" })).status).toBe(404);
		const p = await started(buyer, slotId, { method: "points" });
		expect((await confirm(stranger, p)).status).toBe(404);
		expect((await http.get(`/api/payments/${p}`, stranger.token)).status).toBe(404);
		expect((await http.post(`/api/payments/${p}/confirm`)).status).toBe(401);
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
		const paymentId = await started(late.buyer, late.slotId, { method: "points" });
		await sql(DB, "UPDATE slots SET expires_at = now() + interval '300 milliseconds' WHERE id = $1", [late.slotId]);
		await waitFor("the sweep to expire it", async () => (await statusOf(late.slotId)) === "EXPIRED", 10_000);
		const r = await confirm(late.buyer, paymentId);
		expect(r.status).toBe(410);
		expect(r.body).toMatchObject({ type: "SLOT_EXPIRED", data: { payment: { status: "FAILED", failureReason: "SLOT_EXPIRED" } } });
		expect((await pay(late.buyer, late.slotId, { method: "points" })).status).toBe(410);
		expect(await statusOf(late.slotId)).toBe("EXPIRED");
	});
});

describe("the race between paying and expiring", () => {
	it("lets exactly one side win for each of 200 slots, with confirms and sweeps running at once", async () => {
		const product = await createSale(DB, 200);
		const buyers = await seedBuyers(DB, 200, "race");
		const grants = await Promise.all(buyers.map(b => claim(node.url, product, b)));
		expect(grants.map(g => g.type)).toEqual(buyers.map(() => "GRANTED"));
		const paymentIds = await Promise.all(buyers.map((b, i) => started(b, grants[i].body.slot.id, { method: "card", cardNumber: "4242424242424242" })));
		// Read the units before any slot is made to expire: the 200 ms sweep expires the odd ones at once.
		const units = new Map((await sql<{ id: string; unit: number }>(DB, "SELECT id, unit FROM slots WHERE product_id = $1 AND status = 'HELD'", [product])).map(r => [String(r.id), r.unit]));
		expect(units.size).toBe(200);
		// Who must win is decided by the expiry alone, whatever the machine's speed: slots of even
		// units run out a minute from now (the payment must win), odd ones are already past (the
		// expiry must win, whether a sweep reaches the row before the confirm or after it).
		await sql(
			DB,
			`UPDATE slots SET expires_at = CASE WHEN unit % 2 = 0 THEN now() + interval '1 minute' ELSE now() - interval '1 second' END
			 WHERE product_id = $1 AND status = 'HELD'`,
			[product]
		);
		let sweeping = true;
		let sweeps = 0;
		const sweeper = (async () => {
			while (sweeping) {
				await node.broker.call("slots.sweep", {});
				sweeps += 1;
			}
		})();
		const answers = await Promise.all(buyers.map((b, i) => confirm(b, paymentIds[i])));
		sweeping = false;
		await sweeper;
		// The premise: sweeps ran while the confirms did.
		expect(sweeps).toBeGreaterThan(1);
		await node.broker.call("slots.sweep", {});

		answers.forEach((a, i) => {
			const unit = units.get(grants[i].body.slot.id)!;
			if (unit % 2 === 0) expect([unit, a.status, a.body.payment?.status]).toEqual([unit, 200, "SUCCESS"]);
			else expect([unit, a.status, a.body.type]).toEqual([unit, 410, "SLOT_EXPIRED"]);
		});
		const rows = await sql<{ slot_status: string; payment_status: string; reason: string | null; unit: number }>(
			DB,
			`SELECT s.status AS slot_status, p.status AS payment_status, p.failure_reason AS reason, s.unit
			 FROM payments p JOIN slots s ON s.id = p.slot_id WHERE s.product_id = $1`,
			[product]
		);
		expect(rows).toHaveLength(200);
		for (const r of rows) {
			// Never a payment on an expired slot, never an expired paid slot.
			if (r.unit % 2 === 0) expect([r.slot_status, r.payment_status]).toEqual(["PAID", "SUCCESS"]);
			else expect([r.slot_status, r.payment_status, r.reason]).toEqual(["EXPIRED", "FAILED", "SLOT_EXPIRED"]);
		}
		// AVAILABLE + HELD + PAID = stock: every expired unit came back.
		const [live] = await sql<{ n: number; paid: number; free: number }>(
			DB,
			`SELECT count(*) FILTER (WHERE status <> 'EXPIRED')::int AS n, count(*) FILTER (WHERE status = 'PAID')::int AS paid,
			        count(*) FILTER (WHERE status = 'AVAILABLE')::int AS free FROM slots WHERE product_id = $1`,
			[product]
		);
		expect(live).toEqual({ n: 200, paid: 100, free: 100 });
	});
});

describe("the request hash (issue 22, point 4)", () => {
	const unkeyed = (slotId: string, cardNumber: string) =>
		createHash("sha256").update(JSON.stringify([slotId, "card", [["cardNumber", cardNumber]]])).digest("hex");

	it("is keyed: the full card number cannot be found from the row's slot id and last4; a replay still matches", async () => {
		const { buyer, slotId } = await holding("hash");
		const card = "4242424242424242";
		const first = await pay(buyer, slotId, { method: "card", cardNumber: card }, "hash-key");
		expect(first.status).toBe(201);
		const [row] = await sql<{ request_hash: string; details: { last4: string } }>(DB, "SELECT request_hash, details FROM payments WHERE id = $1", [first.body.payment.id]);
		expect(row.details.last4).toBe("4242");
		expect(row.request_hash).toMatch(/^[0-9a-f]{64}$/);
		// The attack: every candidate with the known last4, hashed as the row was before. The real number is among them.
		expect(row.request_hash).not.toBe(unkeyed(slotId, card));
		// The key is the nodes': the same body under the same key is the same payment, another card is another request.
		const again = await pay(buyer, slotId, { method: "card", cardNumber: card }, "hash-key");
		expect([again.status, again.body.payment.id]).toEqual([201, first.body.payment.id]);
		expect((await pay(buyer, slotId, { method: "card", cardNumber: "5555555555554444" }, "hash-key")).body.type).toBe("IDEMPOTENCY_KEY_REUSED");
	});

	it("the migration clears the old unkeyed hashes", async () => {
		const { buyer, slotId } = await holding("oldhash");
		const p = await pay(buyer, slotId, { method: "card", cardNumber: "4242424242424242" }, "old-key");
		await sql(DB, "UPDATE payments SET request_hash = $2 WHERE id = $1", [p.body.payment.id, unkeyed(slotId, "4242424242424242")]);
		const c = new Client({ connectionString: DB });
		await c.connect();
		try {
			await new KeyedRequestHash1732860000000().up({ query: (text: string) => c.query(text) } as never);
		} finally {
			await c.end();
		}
		expect(await sql(DB, "SELECT count(*)::int AS n FROM payments WHERE request_hash = $1", [unkeyed(slotId, "4242424242424242")])).toEqual([{ n: 0 }]);
		expect(await sql(DB, "SELECT request_hash FROM payments WHERE id = $1", [p.body.payment.id])).toEqual([{ request_hash: null }]);
		// A replay of that old request cannot be matched any more: refused, never paid twice.
		expect((await pay(buyer, slotId, { method: "card", cardNumber: "4242424242424242" }, "old-key")).body.type).toBe("IDEMPOTENCY_KEY_REUSED");
	});
});

describe("a charge for a slot that can no longer be paid (issue 22, point 7)", () => {
	const ledgerOf = (method: string) => (node.broker.getLocalService("payments") as any).providers.get(method).ledger;
	const failedMail = (paymentId: string) => node.messages.find(m => m.kind === "payment.failed" && m.dedupeKey === `payment.failed-${paymentId}`);

	it("is voided when the slot expired between start and confirm, and the buyer is told so truthfully", async () => {
		const late = await holding("voidlate");
		const charged = countCharges(node.broker, "card");
		const paymentId = await started(late.buyer, late.slotId, { method: "card", cardNumber: "4242424242424242" });
		await sql(DB, "UPDATE slots SET expires_at = now() + interval '300 milliseconds' WHERE id = $1", [late.slotId]);
		await waitFor("the sweep to expire it", async () => (await statusOf(late.slotId)) === "EXPIRED", 10_000);
		const r = await confirm(late.buyer, paymentId);
		expect(r.status).toBe(410);
		expect(r.body).toMatchObject({ type: "SLOT_EXPIRED", data: { charge: "VOIDED", payment: { status: "FAILED", failureReason: "SLOT_EXPIRED" } } });
		expect(r.body.message).toMatch(/the charge was cancelled/);
		// The gateway charged once, and that charge is cancelled.
		expect(charged.get(`payment-${paymentId}`)).toBe(1);
		expect(ledgerOf("card").voided.get(`payment-${paymentId}`)).toBe(1);
		await waitFor("the failure message", () => !!failedMail(paymentId), 10_000);
		const text = failedMail(paymentId)!.text;
		expect(text).toContain("승인된 결제는 취소되었으며");
		expect(text).not.toContain("결제된 금액은 없습니다");
	});

	it("is voided when another payment paid the slot first", async () => {
		const { buyer, slotId } = await holding("voidtwice");
		const first = await started(buyer, slotId, { method: "card", cardNumber: "4242424242424242" });
		const second = await started(buyer, slotId, { method: "easypay", provider: "toss" });
		expect((await confirm(buyer, first)).status).toBe(200);
		const r = await confirm(buyer, second);
		expect(r.status).toBe(409);
		expect(r.body).toMatchObject({ type: "SLOT_NOT_HELD", data: { charge: "VOIDED" } });
		expect(ledgerOf("easypay").voided.get(`payment-${second}`)).toBe(1);
		// The paid one is not touched.
		expect(ledgerOf("card").voided.get(`payment-${first}`)).toBeUndefined();
	});

	it("a declined card was never charged, and says so", async () => {
		const { buyer, slotId } = await holding("nocharge");
		const paymentId = await started(buyer, slotId, { method: "card", cardNumber: "4000000000000002" });
		const r = await confirm(buyer, paymentId);
		expect(r.status).toBe(402);
		expect(r.body.data.charge).toBeUndefined();
		expect(ledgerOf("card").voided.get(`payment-${paymentId}`)).toBeUndefined();
	});
});

describe("bounds (issue 22, point 10)", () => {
	it("one slot has at most 5 PENDING payments; a repeat of a key still answers its payment", async () => {
		const { buyer, slotId } = await holding("pendingcap");
		const ids: string[] = [];
		for (let i = 0; i < 5; i++) ids.push((await pay(buyer, slotId, { method: "points" }, `cap-${i}`)).body.payment.id);
		const sixth = await pay(buyer, slotId, { method: "points" }, "cap-5");
		expect([sixth.status, sixth.body.type]).toEqual([409, "TOO_MANY_PENDING_PAYMENTS"]);
		const again = await pay(buyer, slotId, { method: "points" }, "cap-0");
		expect([again.status, again.body.payment.id]).toEqual([201, ids[0]]);
		expect(await sql(DB, "SELECT count(*)::int AS n FROM payments WHERE slot_id = $1", [slotId])).toEqual([{ n: 5 }]);
	});
});
