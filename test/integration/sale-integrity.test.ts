import type { DataSource } from "typeorm";
import { PRODUCT_CHANGED, ProductChanged } from "../../contracts";
import { openDatabase } from "../../entities";
import { PgActorStore } from "../../services/allocator/pg-store";
import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { claim, createSale, reclaimSlot, seedBuyers, sleep } from "../helpers/sale";
import { asAdmin } from "../helpers/identity";

/**
 * The sale's own holes (issue 14, points 12 to 16): unknown products, idle actors, the gateways'
 * schedule lease, the takeover's snapshot, a lost reclaim, the gateway's error bodies, the outbox.
 */
const DB = freshDatabaseUrl("saleint");
let node: StoreNode;

beforeAll(async () => {
	node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, SLOT_TTL_SECONDS: "2", SLOT_REMINDER_BEFORE_SECONDS: "1", SLOT_SWEEP_INTERVAL_MS: "60000" });
});
afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

type AllocatorState = { actors: Map<string, unknown>; known: Map<string, unknown> };
const allocatorOf = (n: StoreNode) => n.broker.getLocalService("allocator") as unknown as AllocatorState;

describe("products nobody can buy", () => {
	it("answers unknown product ids 404 from one cached lookup: no actor, no takeover, no metric series", async () => {
		const buyers = await seedBuyers(DB, 30, "unknown");
		const before = allocatorOf(node).actors.size;
		const ids = buyers.map((_, i) => String(987_650_000 + i));
		const replies = await Promise.all(buyers.map((b, i) => claim(node.url, ids[i], b)));
		expect(replies.map(r => [r.status, r.type])).toEqual(buyers.map(() => [404, "PRODUCT_NOT_FOUND"]));
		// The same unknown id again and again: still 404, answered from the cache.
		const again = await Promise.all(buyers.slice(0, 4).map(b => claim(node.url, ids[0], b)));
		expect(again.map(r => r.status)).toEqual([404, 404, 404, 404]);
		expect(allocatorOf(node).actors.size).toBe(before);
		for (const id of ids) expect(allocatorOf(node).actors.has(id)).toBe(false);
		expect(allocatorOf(node).known.has(ids[0])).toBe(true);
		const metrics = await api(node.url).get("/metrics");
		expect(metrics.status).toBe(200);
		expect(metrics.text).not.toMatch(/product="98765/);
	});

	it("releases the actor of a deleted product at once", async () => {
		const product = await createSale(DB, 2, new Date(Date.now() + 60 * 60_000));
		const [b] = await seedBuyers(DB, 1, "deleted");
		expect((await claim(node.url, product, b)).type).toBe("SALE_NOT_OPEN");
		expect(allocatorOf(node).actors.has(product)).toBe(true);
		await node.broker.call("products.remove", { id: product }, asAdmin(node.broker));
		await waitFor("the actor to be released", () => !allocatorOf(node).actors.has(product), 5000);
	});

	it("releases an idle actor and takes the product over again at the next claim", async () => {
		const db = freshDatabaseUrl("idle");
		const idle = await startNode({ DATABASE_URL: db, JWT_SECRET: TEST_SECRET, ALLOCATOR_IDLE_RELEASE_MS: "800" });
		try {
			const product = await createSale(db, 2);
			const [a, b] = await seedBuyers(db, 2, "idle");
			const first = await claim(idle.url, product, a);
			expect(first.type).toBe("GRANTED");
			expect(allocatorOf(idle).actors.has(product)).toBe(true);
			const gauges = async () => (await api(idle.url).get("/metrics")).text.split("\n").filter(l => l.startsWith("dopamine_") && l.includes(`product="${product}"`) && !l.includes("takeovers"));
			expect((await gauges()).length).toBeGreaterThan(0);
			await waitFor("the idle actor to be released", () => !allocatorOf(idle).actors.has(product), 5000);
			expect(await gauges()).toEqual([]); // its labelled gauges went with it
			const second = await claim(idle.url, product, b);
			expect(second.type).toBe("GRANTED");
			expect(second.body.slot.epoch).toBeGreaterThan(first.body.slot.epoch); // a fresh takeover, from PostgreSQL
			expect((await claim(idle.url, product, a)).type).toBe("ALREADY_HOLDING");
		} finally {
			await idle.stop();
			await dropDatabase(db);
		}
	});
});

describe("the gateways' schedule", () => {
	it("is a lease: a gateway that missed an earlier saleAt sells within seconds, not at the old time", async () => {
		const oldSaleAt = new Date(Date.now() + 60 * 60_000);
		const product = await createSale(DB, 1, oldSaleAt);
		node.broker.broadcast(PRODUCT_CHANGED, { id: product, stock: 1, saleAt: oldSaleAt.toISOString() } satisfies ProductChanged);
		const [b] = await seedBuyers(DB, 1, "lease");
		await waitFor("the gateway to learn the schedule", async () => {
			const r = await claim(node.url, product, b);
			return r.type === "SALE_NOT_OPEN" && r.body.data.epoch === undefined; // answered by the gateway itself
		}, 5000);
		// The sale moves to now; the allocator hears of it, this gateway does not.
		await sql(DB, "UPDATE products SET sale_at = now() - interval '1 second' WHERE id = $1", [product]);
		node.broker.broadcast(PRODUCT_CHANGED, { id: product, saleAt: new Date(Date.now() - 1000).toISOString() } satisfies ProductChanged, { groups: ["allocator"] });
		const t0 = Date.now();
		let granted = null;
		while (!granted && Date.now() - t0 < 8000) {
			const r = await claim(node.url, product, b);
			if (r.type === "GRANTED") granted = r;
			else await sleep(300);
		}
		expect(granted).not.toBeNull();
		expect(Date.now() - t0).toBeLessThan(8000); // SOLD_OUT_LEASE_MS (2 s) and room, not an hour
	});
});

describe("the takeover", () => {
	it("reads free and active units in one snapshot: a reclaim in the middle is seen whole or not at all", async () => {
		const product = await createSale(DB, 3);
		const [b] = await seedBuyers(DB, 1, "snapshot");
		const g = await claim(node.url, product, b);
		expect(g.type).toBe("GRANTED");
		const ds = await openDatabase(DB, 2);
		try {
			// After the takeover's first read of the product's units, a reclaim commits elsewhere.
			let struck = false;
			const between: Pick<DataSource, "createQueryRunner"> = {
				createQueryRunner: () => {
					const q = ds.createQueryRunner();
					const query = q.query.bind(q);
					q.query = (async (text: string, params?: unknown[]) => {
						const out = await query(text, params);
						if (!struck && /FROM slots/.test(text)) {
							struck = true;
							expect(await reclaimSlot(DB, g.body.slot.id)).toBe(true);
						}
						return out;
					}) as typeof q.query;
					return q;
				},
			};
			const loaded = await new PgActorStore(between as DataSource, 60).takeOver(product);
			expect(struck).toBe(true);
			expect(loaded!.free.length + loaded!.active.length).toBe(3);
		} finally {
			await ds.destroy();
		}
	});

	it("covers a reclaim whose message was lost: the buyer is not told ALREADY_HOLDING with a dead slot", async () => {
		const product = await createSale(DB, 1);
		const [b] = await seedBuyers(DB, 1, "lost");
		const g = await claim(node.url, product, b);
		expect(g.type).toBe("GRANTED");
		// Reclaimed by the slots service's own statement, and nobody is told.
		expect(await reclaimSlot(DB, g.body.slot.id)).toBe(true);
		await sleep(Math.max(0, Date.parse(g.body.slot.expiresAt) - Date.now()) + 200);
		let answer = await claim(node.url, product, b);
		for (let i = 0; i < 10 && answer.type !== "GRANTED"; i++) {
			expect(answer.type).toBe("ALREADY_HOLDING");
			await sleep(500);
			answer = await claim(node.url, product, b);
		}
		expect(answer.type).toBe("GRANTED");
		expect(answer.body.slot.id).not.toBe(g.body.slot.id);
	});
});

describe("the gateway's error bodies", () => {
	it("answers 503 with Retry-After when no endpoint of a service is available, with no internals", async () => {
		const list = (node.broker.registry as any).getActionEndpoints("products.list");
		const endpoints: { state: boolean }[] = list.endpoints;
		expect(endpoints.length).toBeGreaterThan(0);
		try {
			for (const e of endpoints) e.state = false; // as an open circuit breaker leaves them
			const r = await api(node.url).get("/api/products");
			expect([r.status, r.body.type, r.headers.get("retry-after")]).toEqual([503, "SERVICE_UNAVAILABLE", "1"]);
			expect(r.text).not.toMatch(/nodeID|products\.list|"stack"|at .*\.js/);
		} finally {
			for (const e of endpoints) e.state = true;
		}
		expect((await api(node.url).get("/api/products")).status).toBe(200);
	});
});

describe("the outbox", () => {
	it("prunes what was sent, in bounded batches, and keeps what is pending or recent", async () => {
		await sql(DB, `INSERT INTO outbox (topic, done_at) SELECT 'test.old', now() - interval '2 hours' FROM generate_series(1, 2500)`);
		await sql(DB, `INSERT INTO outbox (topic) SELECT 'test.pending' FROM generate_series(1, 3)`);
		await sql(DB, `INSERT INTO outbox (topic, done_at) SELECT 'test.recent', now() FROM generate_series(1, 3)`);
		await waitFor("the sweep to prune", async () => (await sql(DB, "SELECT 1 FROM outbox WHERE topic = 'test.old'")).length === 0, 30_000);
		const left = await sql<{ topic: string; n: number }>(DB, "SELECT topic, count(*)::int AS n FROM outbox WHERE topic LIKE 'test.%' GROUP BY topic ORDER BY topic");
		expect(left).toEqual([
			{ topic: "test.pending", n: 3 },
			{ topic: "test.recent", n: 3 },
		]);
	});
});
