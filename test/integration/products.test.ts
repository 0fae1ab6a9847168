import { PRODUCT_CHANGED } from "../../contracts";
import { api } from "../helpers/http";
import { holdUnitByHand, markPaidByHand } from "../helpers/sale";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { asBuyer } from "../helpers/identity";

const DB = freshDatabaseUrl("products");
let node: StoreNode;
let http: ReturnType<typeof api>;
let admin: string;
let buyer: string;
let buyerId: string;

const later = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();

beforeAll(async () => {
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		ADMIN_LOGIN_ID: "boss",
		ADMIN_PASSWORD: "boss-password-1",
		ADMIN_EMAIL: "boss@example.com",
	});
	http = api(node.url);
	admin = (await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" })).body.accessToken;
	const s = await http.post("/api/auth/signup", { loginId: "buyer1", password: "buyer-password-1", email: "b1@example.com" });
	buyerId = s.body.user.id;
	buyer = (await http.post("/api/auth/login", { loginId: "buyer1", password: "buyer-password-1" })).body.accessToken;
});
afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

async function create(body: Record<string, unknown>) {
	const r = await http.post("/api/admin/products", { name: "Sneaker", price: 129000, stock: 10, saleAt: later(60), ...body }, admin);
	expect(r.status).toBe(201);
	return r.body.product;
}

/** AVAILABLE + HELD + PAID = stock, and live units are distinct. */
async function checkInvariant(productId: string) {
	const [row] = await sql<{ stock: number; live: string; units: string }>(
		DB,
		`SELECT p.stock, count(s.*) FILTER (WHERE s.status <> 'EXPIRED') AS live,
		        count(DISTINCT s.unit) FILTER (WHERE s.status <> 'EXPIRED') AS units
		 FROM products p LEFT JOIN slots s ON s.product_id = p.id WHERE p.id = $1 GROUP BY p.stock`,
		[productId]
	);
	expect(Number(row.live)).toBe(row.stock);
	expect(Number(row.units)).toBe(row.stock);
}

/** Marks `n` free slots of a product HELD by fresh buyers, straight in the database. */
async function holdDirectly(productId: string, n: number) {
	for (let i = 0; i < n; i++) {
		const [u] = await sql<{ id: string }>(
			DB,
			`INSERT INTO users (login_id, email, password_hash) VALUES ($1, $2, 'x') RETURNING id`,
			[`holder-${productId}-${i}`, `h${i}@example.com`]
		);
		await holdUnitByHand(DB, productId, u.id);
	}
}

describe("admin product management", () => {
	it("creates a product with stock N and N AVAILABLE slot rows numbered 1..N", async () => {
		const p = await create({ name: "Limited Jacket", stock: 25, description: "Only 25" });
		expect(p).toEqual({
			id: expect.any(String),
			name: "Limited Jacket",
			description: "Only 25",
			price: 129000,
			stock: 25,
			saleAt: expect.any(String),
			remaining: 25,
			status: "SCHEDULED",
		});
		const rows = await sql<{ unit: number; status: string }>(DB, "SELECT unit, status FROM slots WHERE product_id = $1 ORDER BY unit", [p.id]);
		expect(rows.map(r => r.unit)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
		expect(new Set(rows.map(r => r.status))).toEqual(new Set(["AVAILABLE"]));
	});

	it("lists and gets products publicly, with remaining and status", async () => {
		const open = await create({ name: "Open now", stock: 3, saleAt: later(-1) });
		const list = await http.get("/api/products");
		expect(list.status).toBe(200);
		expect(list.body.products.find((p: { id: string }) => p.id === open.id)).toMatchObject({ status: "ON_SALE", remaining: 3 });
		const one = await http.get(`/api/products/${open.id}`);
		expect(one.status).toBe(200);
		expect(one.body.product).toMatchObject({ id: open.id, status: "ON_SALE", remaining: 3, stock: 3 });

		await holdDirectly(open.id, 3);
		// Reads are cached for PRODUCT_CACHE_TTL_SECONDS (1 s by default): the sell-out shows within it.
		let soldOut: any;
		await waitFor("the read to show the sell-out", async () => (soldOut = (await http.get(`/api/products/${open.id}`)).body.product).remaining === 0, 10_000);
		expect(soldOut).toMatchObject({ status: "SOLD_OUT", remaining: 0, stock: 3 });
	});

	it("answers 404 PRODUCT_NOT_FOUND for unknown and malformed ids", async () => {
		for (const id of ["999999", "abc", "1e5", "-1", "99999999999999999999999"]) {
			const r = await http.get(`/api/products/${id}`);
			expect(r.status).toBe(404);
			expect(r.body.type).toBe("PRODUCT_NOT_FOUND");
		}
		expect((await http.patch("/api/admin/products/999999", { price: 1 }, admin)).status).toBe(404);
		expect((await http.del("/api/admin/products/999999", admin)).status).toBe(404);
	});

	it.each([
		["no stock", { stock: undefined }, "stock"],
		["no saleAt", { saleAt: undefined }, "saleAt"],
		["negative stock", { stock: -1 }, "stock"],
		["fractional stock", { stock: 2.5 }, "stock"],
		["stock as a string", { stock: "10" }, "stock"],
		["negative price", { price: -5 }, "price"],
		["empty name", { name: "   " }, "name"],
		["a date that is not one", { saleAt: "tomorrow-ish" }, "saleAt"],
	])("rejects a product with %s: 422", async (_why, patch, field) => {
		const r = await http.post("/api/admin/products", { name: "X", price: 1, stock: 1, saleAt: later(5), ...patch }, admin);
		expect(r.status).toBe(422);
		expect(r.body.type).toBe("VALIDATION_ERROR");
		expect(JSON.stringify(r.body.data)).toContain(field);
	});

	it("keeps buyers and strangers out of admin routes", async () => {
		const asBuyer = await http.post("/api/admin/products", { name: "X", price: 1, stock: 1, saleAt: later(5) }, buyer);
		expect(asBuyer.status).toBe(403);
		expect(asBuyer.body.type).toBe("FORBIDDEN");
		const anonymous = await http.post("/api/admin/products", { name: "X", price: 1, stock: 1, saleAt: later(5) });
		expect(anonymous.status).toBe(401);
		const p = await create({});
		expect((await http.patch(`/api/admin/products/${p.id}`, { stock: 1 }, buyer)).status).toBe(403);
		expect((await http.del(`/api/admin/products/${p.id}`, buyer)).status).toBe(403);
		expect((await sql(DB, "SELECT count(*)::int AS n FROM slots WHERE product_id = $1", [p.id]))[0]).toEqual({ n: 10 });
	});

	it("also refuses a non-admin caller inside the service, not only at the gateway", async () => {
		await expect(
			node.broker.call("products.create", { name: "X", price: 1, stock: 1, saleAt: later(5) }, asBuyer(node.broker, buyerId))
		).rejects.toMatchObject({ code: 403, type: "FORBIDDEN" });
	});
});

describe("stock changes", () => {
	it("raises stock by adding free units and lowers it by removing free ones", async () => {
		const p = await create({ stock: 5 });
		const up = await http.patch(`/api/admin/products/${p.id}`, { stock: 8, price: 99000 }, admin);
		expect(up.status).toBe(200);
		expect(up.body.product).toMatchObject({ stock: 8, remaining: 8, price: 99000 });
		await checkInvariant(p.id);

		await holdDirectly(p.id, 2);
		const down = await http.patch(`/api/admin/products/${p.id}`, { stock: 3 }, admin);
		expect(down.status).toBe(200);
		expect(down.body.product).toMatchObject({ stock: 3, remaining: 1 });
		await checkInvariant(p.id);
		const held = await sql(DB, "SELECT id FROM slots WHERE product_id = $1 AND status = 'HELD'", [p.id]);
		expect(held).toHaveLength(2);
	});

	it("refuses stock below HELD + PAID with 409 STOCK_BELOW_HELD and changes nothing", async () => {
		const p = await create({ stock: 6 });
		await holdDirectly(p.id, 3);
		const [held] = await sql<{ id: string }>(DB, "SELECT id FROM slots WHERE product_id = $1 AND status = 'HELD' LIMIT 1", [p.id]);
		await markPaidByHand(DB, held.id);
		const r = await http.patch(`/api/admin/products/${p.id}`, { stock: 2 }, admin);
		expect(r.status).toBe(409);
		expect(r.body.type).toBe("STOCK_BELOW_HELD");
		expect(r.body.data).toMatchObject({ held: 3 });
		const exact = await http.patch(`/api/admin/products/${p.id}`, { stock: 3 }, admin);
		expect(exact.status).toBe(200);
		expect(exact.body.product).toMatchObject({ stock: 3, remaining: 0, status: "SCHEDULED" });
		await checkInvariant(p.id);
	});

	it("keeps the invariant when many stock changes race", async () => {
		const p = await create({ stock: 10 });
		await holdDirectly(p.id, 2);
		const targets = [4, 12, 7, 20, 2, 15, 9, 3, 11, 6];
		const replies = await Promise.all(targets.map(stock => http.patch(`/api/admin/products/${p.id}`, { stock }, admin)));
		for (const r of replies) expect([200, 409]).toContain(r.status);
		await checkInvariant(p.id);
	});
});

describe("deleting", () => {
	it("deletes a product before its sale, with its slot rows", async () => {
		const p = await create({ saleAt: later(30) });
		const r = await http.del(`/api/admin/products/${p.id}`, admin);
		expect(r.status).toBe(204);
		expect((await http.get(`/api/products/${p.id}`)).status).toBe(404);
		expect(await sql(DB, "SELECT id FROM slots WHERE product_id = $1", [p.id])).toHaveLength(0);
	});

	it("refuses to delete a product whose sale started: 409 SALE_STARTED", async () => {
		const p = await create({ saleAt: later(-1) });
		const r = await http.del(`/api/admin/products/${p.id}`, admin);
		expect(r.status).toBe(409);
		expect(r.body.type).toBe("SALE_STARTED");
		expect((await http.get(`/api/products/${p.id}`)).status).toBe(200);
	});
});

describe("cached product reads (a page per buyer at 10:00)", () => {
	// Two nodes of one cluster with a long TTL, so what is asserted does not race the clock.
	let a: StoreNode;
	let b: StoreNode;
	beforeAll(async () => {
		const namespace = freshNamespace("cache");
		const env = { DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: namespace, PRODUCT_CACHE_TTL_SECONDS: "600" };
		a = await startNode({ ...env, NODE_ID: `${namespace}-a` });
		b = await startNode({ ...env, NODE_ID: `${namespace}-b` });
		// A broadcast reaches the nodes its sender knows: wait until each has seen the other's products service.
		const hears = (from: StoreNode, to: StoreNode) =>
			(from.broker as any).registry.events.getAllEndpoints(PRODUCT_CHANGED).some((e: { id: string; service?: { name: string } }) => e.id === to.broker.nodeID);
		await waitFor("nodes a and b to know each other's subscriptions", () => hears(a, b) && hears(b, a), 10_000);
	});
	afterAll(async () => {
		await a?.stop();
		await b?.stop();
	});
	const read = async (n: StoreNode, id: string) => (await api(n.url).get(`/api/products/${id}`)).body.product;
	const listed = async (n: StoreNode, id: string) => (await api(n.url).get("/api/products")).body.products.find((p: { id: string }) => p.id === id);
	const foundInCache = (n: StoreNode) => Number(n.broker.metrics.getMetric("moleculer.cacher.found.total")?.get()?.value ?? 0);

	it("asks PostgreSQL once for a hundred reads of a product at once", async () => {
		const p = await create({ name: "Hot", stock: 3, saleAt: later(-1) });
		const before = foundInCache(a);
		const reads = await Promise.all(Array.from({ length: 100 }, () => api(a.url).get(`/api/products/${p.id}`)));
		expect(reads.map(r => r.status)).toEqual(Array(100).fill(200));
		expect(reads.every(r => r.body.product.name === "Hot" && r.body.product.remaining === 3)).toBe(true);
		// One read ran the action; the 99 others waited on its lock and were answered from the cache.
		expect(foundInCache(a) - before).toBe(99);
	});

	it("keeps a read until the TTL, and drops it on every node when a product changes", async () => {
		const p = await create({ name: "Cached", stock: 3, saleAt: later(-1) });
		for (const n of [a, b]) {
			// Made on the file's node, outside this cluster (no products.changed reaches a or b): a node finds
			// an id its cached list lacks by re-reading the list, a few times a second at most (a crawl of made-up
			// ids must not cost a query each), so the first read may answer 404 for up to a second.
			await waitFor(`node ${n.broker.nodeID} to find the new product`, async () => (await api(n.url).get(`/api/products/${p.id}`)).status === 200, 5_000);
			expect(await read(n, p.id)).toMatchObject({ name: "Cached", price: 129000 });
			expect(await listed(n, p.id)).toMatchObject({ name: "Cached" });
		}
		// A change that no products service made (by hand, in the database): the caches keep their read.
		await sql(DB, "UPDATE products SET name = 'Renamed by hand' WHERE id = $1", [p.id]);
		for (const n of [a, b]) {
			expect(await read(n, p.id)).toMatchObject({ name: "Cached" });
			expect(await listed(n, p.id)).toMatchObject({ name: "Cached" });
		}
		// An admin's change on node a: a's next read shows it at once, b's once the broadcast reached b.
		const patched = await api(a.url).patch(`/api/admin/products/${p.id}`, { price: 1000 }, admin);
		expect(patched.status).toBe(200);
		expect(await read(a, p.id)).toMatchObject({ name: "Renamed by hand", price: 1000 });
		expect(await listed(a, p.id)).toMatchObject({ name: "Renamed by hand", price: 1000 });
		await waitFor("node b to drop its cached reads", async () => (await read(b, p.id)).price === 1000 && (await listed(b, p.id)).price === 1000, 10_000);
		// A deleted product is gone from every node's reads.
		const gone = await create({ name: "Going", saleAt: later(60) });
		for (const n of [a, b]) await waitFor(`node ${n.broker.nodeID} to find the product to delete`, async () => (await read(n, gone.id))?.name === "Going", 5_000);
		expect((await api(b.url).del(`/api/admin/products/${gone.id}`, admin)).status).toBe(204);
		expect((await api(b.url).get(`/api/products/${gone.id}`)).status).toBe(404);
		await waitFor("node a to forget the deleted product", async () => (await api(a.url).get(`/api/products/${gone.id}`)).status === 404, 10_000);
	});
});
