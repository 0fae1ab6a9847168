import { Client } from "pg";
import { checkOrder } from "../../lib/order-check";
import { PRODUCT_CHANGED } from "../../contracts";
import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { allocatorWithFaults, installFaults } from "../helpers/faults";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { claim, countBy, createSale, holdUnitByHand, reclaimSlot, saleState, seedBuyers, sleep } from "../helpers/sale";

/** Claims against one node (no transporter): the actor, its commits and the gateway's fast path. */
const DB = freshDatabaseUrl("claims");
let node: StoreNode;
const faults = installFaults();

beforeAll(async () => {
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		CLAIM_RATE_PER_SECOND: "5",
		SOLD_OUT_LEASE_MS: "1000",
		// The messages' English texts are asserted below (the default is Korean).
		LOCALE: "en",
		ADMIN_LOGIN_ID: "boss",
		ADMIN_PASSWORD: "boss-password-1",
		ADMIN_EMAIL: "boss@example.com",
	}, { allocator: allocatorWithFaults(faults) });
});
afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

describe("order", () => {
	it("grants the first 10 of 30 buyers claiming one after another, with the lowest seqs", async () => {
		const product = await createSale(DB, 10);
		const buyers = await seedBuyers(DB, 30, "order");
		const replies = [];
		for (const b of buyers) replies.push(await claim(node.url, product, b));
		expect(replies.map(r => r.type)).toEqual([...Array(10).fill("GRANTED"), ...Array(20).fill("SOLD_OUT")]);
		expect(replies.slice(0, 10).every(r => r.status === 201)).toBe(true);
		for (const r of replies.slice(10)) expect(r.status).toBe(409);
		const granted = replies.filter(r => r.type === "GRANTED");
		const epoch = granted[0].epoch;
		expect(granted.map(r => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
		// Answers from the actor carry (epoch, seq); the gateway's local sold-out answers carry none.
		for (const r of replies.slice(10)) if (r.epoch !== undefined) expect([r.epoch, r.seq! > 10]).toEqual([epoch, true]);
		const held = await sql<{ user_id: string; seq: string }>(DB, "SELECT user_id, seq FROM slots WHERE product_id = $1 AND status = 'HELD' ORDER BY seq", [product]);
		expect(held.map(h => String(h.user_id))).toEqual(buyers.slice(0, 10).map(b => b.id));
		expect(checkOrder(replies).ok).toBe(true);
	});
});

describe("crowd", () => {
	it("gives exactly 100 slots to 100 distinct buyers when 500 buyers send 4 claims each at once", async () => {
		const product = await createSale(DB, 100);
		const buyers = await seedBuyers(DB, 500, "crowd");
		const replies = await Promise.all(buyers.flatMap(b => [0, 1, 2, 3].map(() => claim(node.url, product, b))));
		const byType = countBy(replies, r => r.type);
		// A buyer's claims sent while the first is undecided share its answer (one place in line
		// per buyer), so a winner may see GRANTED more than once: always the same slot.
		expect(Object.keys(byType).sort()).toEqual(["ALREADY_HOLDING", "GRANTED", "SOLD_OUT"].filter(t => byType[t]));
		expect(replies.filter(r => r.status >= 500)).toHaveLength(0);
		expect(new Set(replies.filter(r => r.type === "GRANTED").map(r => r.buyer)).size).toBe(100);
		expect(new Set(replies.filter(r => r.type === "GRANTED").map(r => r.body.slot.id)).size).toBe(100);
		const state = await saleState(DB, product);
		expect(state).toMatchObject({ stock: 100, available: 0, held: 100, distinctHolders: 100, maxActivePerBuyer: 1 });
		const order = checkOrder(replies);
		expect(order.problems).toEqual([]);
		// Every GRANTED and ALREADY_HOLDING names the buyer's own slot.
		const slotOf = new Map(replies.filter(r => r.type === "GRANTED").map(r => [r.buyer, r.body.slot.id]));
		for (const r of replies.filter(r => r.type === "GRANTED")) expect(r.body.slot.id).toBe(slotOf.get(r.buyer));
		for (const r of replies.filter(r => r.type === "ALREADY_HOLDING")) expect(r.body.data.slot.id).toBe(slotOf.get(r.buyer));
	});
});

describe("gateway fast paths", () => {
	it("answers 401 before any sale answer", async () => {
		const product = await createSale(DB, 1);
		const r = await fetch(`${node.url}/api/products/${product}/slots`, { method: "POST" });
		expect(r.status).toBe(401);
		const bad = await fetch(`${node.url}/api/products/${product}/slots`, { method: "POST", headers: { authorization: "Bearer nope" } });
		expect(bad.status).toBe(401);
	});

	it("answers 404 for an unknown product", async () => {
		const [b] = await seedBuyers(DB, 1, "nf");
		for (const id of ["99999999", "abc"]) {
			const r = await claim(node.url, id, b);
			expect([r.status, r.type]).toEqual([404, "PRODUCT_NOT_FOUND"]);
		}
	});

	it("answers SALE_NOT_OPEN from the gateway's schedule before saleAt", async () => {
		const http = api(node.url);
		const admin = (await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" })).body.accessToken;
		const saleAt = new Date(Date.now() + 60 * 60_000).toISOString();
		const p = (await http.post("/api/admin/products", { name: "Later", price: 1, stock: 3, saleAt }, admin)).body.product;
		const [b] = await seedBuyers(DB, 1, "early");
		await waitFor("the gateway to learn the schedule", async () => (await claim(node.url, p.id, b)).epoch === undefined);
		const r = await claim(node.url, p.id, b);
		expect(r.status).toBe(409);
		expect(r.body).toMatchObject({ type: "SALE_NOT_OPEN", data: { saleAt } });
		expect(r.body.data.epoch).toBeUndefined();
	});

	it("answers SOLD_OUT locally once sold out, and the lease lapses to let a claim reach the actor", async () => {
		const product = await createSale(DB, 1);
		const buyers = await seedBuyers(DB, 4, "lease");
		expect((await claim(node.url, product, buyers[0])).type).toBe("GRANTED");
		const fromActor = await claim(node.url, product, buyers[1]);
		expect(fromActor).toMatchObject({ type: "SOLD_OUT", epoch: expect.any(Number), seq: 2 });
		// The gateway learns the flag: its next answers come from memory (no epoch, no seq).
		let local: Awaited<ReturnType<typeof claim>> | undefined;
		await waitFor("the sold-out flag", async () => (local = await claim(node.url, product, buyers[2])).epoch === undefined, 3000);
		expect(local).toMatchObject({ status: 409, type: "SOLD_OUT" });
		// Without renewal the lease (1 s here) lapses: a claim goes to the actor again (and renews it).
		const t0 = Date.now();
		await waitFor("a claim to reach the actor after the lease", async () => (await claim(node.url, product, buyers[3])).epoch !== undefined, 6000);
		expect(Date.now() - t0).toBeLessThan(4000);
	});

	it("answers 429 RATE_LIMITED with Retry-After to a buyer flooding one gateway", async () => {
		const product = await createSale(DB, 50);
		const [b] = await seedBuyers(DB, 1, "flood");
		const replies = await Promise.all(Array.from({ length: 12 }, () => claim(node.url, product, b)));
		const limited = replies.filter(r => r.status === 429);
		expect(limited.length).toBeGreaterThanOrEqual(12 - 5 * 2);
		for (const r of limited) {
			expect(r.type).toBe("RATE_LIMITED");
			expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
		}
		const state = await saleState(DB, product);
		expect(state.held).toBe(1);
	});

	it("lists the buyer's slots on /api/me/slots, newest first", async () => {
		const [p1, p2] = [await createSale(DB, 2), await createSale(DB, 2)];
		const [b] = await seedBuyers(DB, 1, "mine");
		const g1 = await claim(node.url, p1, b);
		const g2 = await claim(node.url, p2, b);
		const mine = await api(node.url).get("/api/me/slots", b.token);
		expect(mine.status).toBe(200);
		expect(mine.body.slots.map((s: { id: string }) => s.id)).toEqual([g2.body.slot.id, g1.body.slot.id]);
		expect(mine.body.slots[0]).toMatchObject({ productId: p2, status: "HELD", heldAt: expect.any(String), expiresAt: expect.any(String) });
	});
});

describe("bounded queue", () => {
	it("answers 503 BUSY with Retry-After beyond the actor's queue, and nothing is lost", async () => {
		const busyDb = freshDatabaseUrl("busy");
		const small = await startNode({ DATABASE_URL: busyDb, JWT_SECRET: TEST_SECRET, ALLOCATOR_QUEUE_LIMIT: "20" });
		try {
			const product = await createSale(busyDb, 10);
			const buyers = await seedBuyers(busyDb, 200, "busy");
			// Hold the product row so the actor's takeover waits: every claim queues behind it.
			const blocker = new Client({ connectionString: busyDb });
			await blocker.connect();
			await blocker.query("BEGIN");
			await blocker.query("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", [product]);
			let answered = 0;
			const pending = Promise.all(buyers.map(b => claim(small.url, product, b).finally(() => (answered += 1))));
			// Release the row only once the queue is full and everyone else was turned away, however
			// long the machine takes to deliver 200 requests.
			await waitFor("the queue to fill and the rest to be turned away", async () => {
				const state: { depth?: number } = await small.broker.call("allocator.state", { productId: product });
				return state.depth === 20 && answered === 180;
			}, 30_000);
			await blocker.query("COMMIT");
			await blocker.end();
			const replies = await pending;
			const byType = countBy(replies, r => r.type);
			expect(byType.BUSY).toBeGreaterThan(0);
			for (const r of replies.filter(r => r.type === "BUSY")) {
				expect(r.status).toBe(503);
				expect(r.retryAfter).toBe("1");
				expect(r.epoch).toBeUndefined();
			}
			expect(byType.BUSY).toBe(200 - 20);
			expect(byType.GRANTED).toBe(10);
			expect(byType.SOLD_OUT).toBe(10);
			expect((await saleState(busyDb, product)).held).toBe(10);
		} finally {
			await small.stop();
			await dropDatabase(busyDb);
		}
	});
});

describe("database hiccup", () => {
	it("answers the failed batch's claims 503, loses and doubles nothing, and completes the sale", async () => {
		const product = await createSale(DB, 40);
		const buyers = await seedBuyers(DB, 120, "hiccup");
		// Warm the actor, then the next commit of this product fails, whichever claims its batch holds.
		expect((await claim(node.url, product, buyers[0])).type).toBe("GRANTED");
		faults.failNextCommits(product, 1);
		const burst = await Promise.all(buyers.slice(1, 60).map(b => claim(node.url, product, b)));
		expect(faults.strikes(product)).toBe(1);
		expect(faults.isArmed).toBe(false);
		const failed = burst.filter(r => r.status === 503);
		expect(failed.length).toBeGreaterThan(0);
		for (const r of failed) expect([r.type, r.retryAfter]).toEqual(["UNAVAILABLE", "1"]);
		// Only that batch failed: every other claim of the burst was decided (granted, while stock lasted).
		expect(burst.filter(r => r.status !== 503).every(r => r.type === "GRANTED" || r.type === "SOLD_OUT")).toBe(true);
		// Demand goes on (the ones turned away try again): the sale completes to exactly N.
		const retry = await Promise.all([...failed.map(r => buyers.find(b => b.id === r.buyer)!), ...buyers.slice(60)].map(b => claim(node.url, product, b)));
		expect(retry.filter(r => r.status >= 500)).toHaveLength(0);
		const state = await saleState(DB, product);
		expect(state).toMatchObject({ held: 40, available: 0, distinctHolders: 40, maxActivePerBuyer: 1 });
		const granted = [...burst, ...retry].filter(r => r.type === "GRANTED").length + 1;
		expect(granted).toBe(40);
	});

	it("answers 503 to every claim while commits fail, and sells again once they stop", async () => {
		const product = await createSale(DB, 5);
		const buyers = await seedBuyers(DB, 10, "outage");
		faults.failCommitsUntilStopped(product);
		const during = await Promise.all(buyers.map(b => claim(node.url, product, b)));
		expect(faults.strikes(product)).toBeGreaterThanOrEqual(1);
		expect(during.map(r => [r.status, r.type])).toEqual(buyers.map(() => [503, "UNAVAILABLE"]));
		expect((await saleState(DB, product)).held).toBe(0);
		faults.disarm();
		const after = await Promise.all(buyers.map(b => claim(node.url, product, b)));
		expect(countBy(after, r => r.type)).toEqual({ GRANTED: 5, SOLD_OUT: 5 });
		expect(await saleState(DB, product)).toMatchObject({ held: 5, available: 0, distinctHolders: 5 });
	});
});

describe("lost re-opened message", () => {
	it("still sells a reclaimed unit within a few seconds", async () => {
		const product = await createSale(DB, 3);
		const buyers = await seedBuyers(DB, 10, "reopen");
		for (const b of buyers.slice(0, 3)) expect((await claim(node.url, product, b)).type).toBe("GRANTED");
		expect((await claim(node.url, product, buyers[3])).type).toBe("SOLD_OUT");
		// Reclaim straight in the database, as an expiry would, and tell nobody.
		const [first] = await sql<{ id: string }>(DB, "SELECT id FROM slots WHERE product_id = $1 AND status = 'HELD' ORDER BY id LIMIT 1", [product]);
		expect(await reclaimSlot(DB, String(first.id))).toBe(true);
		const t0 = Date.now();
		let winner = null;
		for (let i = 0; i < 60 && !winner; i++) {
			const r = await claim(node.url, product, buyers[4 + (i % 6)]);
			if (r.type === "GRANTED") winner = r;
			else await sleep(100);
		}
		expect(winner).not.toBeNull();
		expect(Date.now() - t0).toBeLessThan(5000);
		expect(await saleState(DB, product)).toMatchObject({ held: 3, available: 0 });
	});
});

describe("a buyer whose slot expired", () => {
	it("may claim again, and gets a slot while any is free", async () => {
		const product = await createSale(DB, 2);
		const [first, second] = await seedBuyers(DB, 2, "again");
		const g = await claim(node.url, product, first);
		expect(g.type).toBe("GRANTED");
		expect((await claim(node.url, product, first)).type).toBe("ALREADY_HOLDING");
		// The slot expires (reclaim: EXPIRED stays in the buyer's history, a fresh row takes the unit),
		// and the products service tells the allocator, as the slots service will.
		expect(await reclaimSlot(DB, g.body.slot.id)).toBe(true);
		await node.broker.broadcast(PRODUCT_CHANGED, { id: product });
		const again = await claim(node.url, product, first);
		expect(again.type).toBe("GRANTED");
		expect(again.body.slot.id).not.toBe(g.body.slot.id);
		expect(again.epoch).toBeGreaterThan(g.epoch!);
		expect((await claim(node.url, product, second)).type).toBe("GRANTED");
		const history = await api(node.url).get("/api/me/slots", first.token);
		expect(history.body.slots.map((s: { status: string }) => s.status)).toEqual(["HELD", "EXPIRED"]);
	});
});

describe("after the grant", () => {
	it("sends the 'slot granted' message from the outbox after the answer, once", async () => {
		const product = await createSale(DB, 2);
		const buyers = await seedBuyers(DB, 2, "outbox");
		const g = await claim(node.url, product, buyers[0]);
		expect(g.type).toBe("GRANTED");
		const mine = () => node.messages.filter(m => m.kind === "slot.granted" && m.recipient === "outbox1@example.com");
		await waitFor("the granted message", () => mine().length > 0);
		await sleep(300);
		expect(mine()).toHaveLength(1);
		expect(mine()[0]).toMatchObject({ channel: "email", subject: "Your slot for Test drop", dedupeKey: expect.stringMatching(/^outbox-\d+$/) });
		const rows = await sql<{ done: boolean }>(DB, "SELECT done_at IS NOT NULL AS done FROM outbox WHERE slot_id = $1", [g.body.slot.id]);
		expect(rows).toEqual([{ done: true }]);
	});

	it("sweeps up a grant whose message a crash left unsent", async () => {
		const product = await createSale(DB, 2);
		const [b] = await seedBuyers(DB, 1, "swept");
		// A grant committed with its outbox row, as if the node died before sending.
		await holdUnitByHand(DB, product, b.id, { withOutbox: true });
		const before = node.messages.length;
		await waitFor("the sweep", () => node.messages.slice(before).some(m => m.kind === "slot.granted" && m.recipient === "swept1@example.com"), 15_000);
		await sleep(200);
		expect(node.messages.slice(before).filter(m => m.recipient === "swept1@example.com")).toHaveLength(1);
	});
});

describe("metrics", () => {
	it("shows claims by outcome, queue depth, batches, commit latency, remaining and takeovers on /metrics", async () => {
		const text = await (await fetch(`${node.url}/metrics`)).text();
		expect(text).toMatch(/dopamine_claims_total\{[^}]*outcome="GRANTED",source="allocator"\} \d+/);
		expect(text).toMatch(/dopamine_claims_total\{[^}]*outcome="SOLD_OUT",source="gateway"\} \d+/);
		expect(text).toMatch(/dopamine_allocator_queue_depth\{/);
		expect(text).toMatch(/dopamine_allocator_batch_size_bucket\{[^}]*le="\+Inf"\} [1-9]/);
		expect(text).toMatch(/dopamine_allocator_commit_seconds_bucket\{[^}]*le="\+Inf"\} [1-9]/);
		expect(text).toMatch(/dopamine_product_remaining\{[^}]*product="\d+"\} \d+/);
		expect(text).toMatch(/dopamine_allocator_takeovers_total\{[^}]*product="\d+"\} [1-9]/);
		// Every injected failure of this file was counted, and nothing else failed a commit.
		expect(faults.totalStrikes).toBeGreaterThanOrEqual(2);
		expect(text).toMatch(new RegExp(`dopamine_allocator_commit_failures_total\\{[^}]*reason="ERROR"\\} ${faults.totalStrikes}\\b`));
	});
});
