import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET } from "../helpers/nodes";

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
		await sql(
			DB,
			`UPDATE slots SET status = 'HELD', user_id = $2, held_at = now(), expires_at = now() + interval '30 minutes'
			 WHERE id = (SELECT id FROM slots WHERE product_id = $1 AND status = 'AVAILABLE' ORDER BY unit LIMIT 1)`,
			[productId, u.id]
		);
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
		const soldOut = await http.get(`/api/products/${open.id}`);
		expect(soldOut.body.product).toMatchObject({ status: "SOLD_OUT", remaining: 0, stock: 3 });
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
			node.broker.call("products.create", { name: "X", price: 1, stock: 1, saleAt: later(5) }, { meta: { user: { id: buyerId, role: "buyer" } } })
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
		await sql(DB, "UPDATE slots SET status = 'PAID', paid_at = now() WHERE id = (SELECT id FROM slots WHERE product_id = $1 AND status = 'HELD' LIMIT 1)", [p.id]);
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
