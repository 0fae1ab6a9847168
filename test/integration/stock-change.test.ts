import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { claim, createSale, saleState, seedBuyers } from "../helpers/sale";

/**
 * A stock change during a sale (issue 20, point 4): a raise is read into the running actor (a new
 * epoch, but only the units added are read), while claims keep coming; a cut still takes the
 * product over and reads every live unit. Afterwards PostgreSQL holds AVAILABLE + HELD + PAID = stock, one slot per buyer.
 */
const DB = freshDatabaseUrl("stockchange");
let node: StoreNode;
let admin: string;

beforeAll(async () => {
	node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, ADMIN_LOGIN_ID: "boss", ADMIN_PASSWORD: "boss-password-1", ADMIN_EMAIL: "boss@example.com", CLAIM_RATE_PER_SECOND: "100" });
	admin = (await api(node.url).post("/api/auth/login", { loginId: "boss", password: "boss-password-1" })).body.accessToken;
});
afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

/** Slot rows this node's actors have read, from /metrics. */
const unitsRead = async () => {
	const line = (await api(node.url).get("/metrics")).text.split("\n").find(l => l.startsWith("dopamine_allocator_units_read_total"));
	return line ? Number(line.trim().split(/\s+/).pop()) : 0;
};
const epochOf = async (product: string) => (await sql<{ epoch: number }>(DB, `SELECT epoch FROM products WHERE id = $1`, [product]))[0].epoch;
const patchStock = async (product: string, stock: number) => {
	const r = await api(node.url).patch(`/api/admin/products/${product}`, { stock }, admin);
	expect(r.status).toBe(200);
};

it("a raise mid-sale is read into the running actor (only the units added), while claims keep coming", async () => {
	const product = await createSale(DB, 5);
	const buyers = await seedBuyers(DB, 60, "raise");
	const first = await Promise.all(buyers.slice(0, 8).map(b => claim(node.url, product, b)));
	expect(first.filter(r => r.type === "GRANTED")).toHaveLength(5);
	const epoch = await epochOf(product);
	const readBefore = await unitsRead();

	// Raise by 20 while 52 more buyers claim.
	const [rest] = await Promise.all([Promise.all(buyers.slice(8).map(b => claim(node.url, product, b))), patchStock(product, 25)]);
	// Claims that came before the raise was read may be SOLD_OUT; after it, the new units sell.
	await waitFor("the raised units to be sold", async () => {
		const more = await Promise.all(buyers.slice(8).map(b => claim(node.url, product, b)));
		return more.filter(r => r.type === "GRANTED").length === 0 && (await saleState(DB, product)).available === 0;
	}, 20_000);
	expect(rest.every(r => r.status < 500)).toBe(true);
	// Read in: a new epoch (the order check's "no stock came back" holds per epoch), and only the 20
	// added rows read, not the 25 live ones as a takeover would.
	expect(await epochOf(product)).toBe(epoch + 1);
	expect(await unitsRead()).toBe(readBefore + 20);
	expect(await saleState(DB, product)).toMatchObject({ stock: 25, available: 0, held: 25, distinctHolders: 25, maxActivePerBuyer: 1 });
});

it("a cut mid-sale takes the product over, and the sale stays whole", async () => {
	const product = await createSale(DB, 30);
	const buyers = await seedBuyers(DB, 40, "cut");
	const first = await Promise.all(buyers.slice(0, 10).map(b => claim(node.url, product, b)));
	expect(first.filter(r => r.type === "GRANTED")).toHaveLength(10);
	const epoch = await epochOf(product);
	const readBefore = await unitsRead();
	await patchStock(product, 15);
	const rest = await Promise.all(buyers.slice(10).map(b => claim(node.url, product, b)));
	expect(rest.filter(r => r.type === "GRANTED")).toHaveLength(5);
	expect(await epochOf(product)).toBeGreaterThan(epoch);
	expect(await unitsRead()).toBeGreaterThanOrEqual(readBefore + 15); // every live unit, again
	expect(await saleState(DB, product)).toMatchObject({ stock: 15, available: 0, held: 15, distinctHolders: 15, maxActivePerBuyer: 1 });
});
