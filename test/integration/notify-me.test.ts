import { SERVICES } from "../../broker";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { api } from "../helpers/http";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { seedBuyers, sleep } from "../helpers/sale";
import { TestSmtp } from "../helpers/smtp";

/**
 * "Notify me" against a real SMTP server, with sales a few seconds away: the notice arrives
 * NOTIFY_ME_BEFORE_SECONDS before the opening, once; a reschedule moves it; a deletion cancels it.
 * Times are windows: not before the notice time (less the store's clock reading), before the opening.
 */
jest.setTimeout(90_000);

const BEFORE_S = 3;
const DB = freshDatabaseUrl("notify_me");
let smtpServer: TestSmtp;
let node: StoreNode;
const store = { db: DB, get node() { return node; } };
const smtp = { get server() { return smtpServer; } };

const NODE_ENV = () => ({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		ADMIN_LOGIN_ID: "boss",
		ADMIN_PASSWORD: "boss-password-1",
		ADMIN_EMAIL: "boss@example.com",
		NOTIFY_ME_BEFORE_SECONDS: String(BEFORE_S),
		AGENDA_PROCESS_EVERY_MS: "200",
		NOTIFIER_POLL_MS: "200",
		PUBLIC_URL: "https://shop.example.com",
		SMTP_URL: smtpServer.url,
});

beforeAll(async () => {
	smtpServer = await TestSmtp.start();
	node = await startNode(NODE_ENV());
});
afterAll(async () => {
	await node?.stop();
	await smtpServer?.stop();
	await dropDatabase(DB);
});

describe("notify me (알림 신청)", () => {
	it("sends one notice before the opening; a reschedule moves it, a deletion cancels it, a withdrawal stops it", async () => {
		const http = api(store.node.url);
		const admin = (await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" })).body.accessToken;
		const create = async (name: string, inMs: number) => {
			const r = await http.post("/api/admin/products", { name, price: 1000, stock: 3, saleAt: new Date(Date.now() + inMs).toISOString() }, admin);
			expect(r.status).toBe(201);
			return { id: String(r.body.product.id), saleAt: Date.parse(r.body.product.saleAt) };
		};
		const [eager, doubter, mover, orphan] = await seedBuyers(store.db, 4, "notify");
		const emailOf = async (id: string) => (await sql<{ email: string }>(store.db, "SELECT email FROM users WHERE id = $1", [id]))[0].email;
		const [eagerAt, doubterAt, moverAt, orphanAt] = await Promise.all([eager, doubter, mover, orphan].map(b => emailOf(b.id)));

		const soon = await create("Soon drop", 9_000);
		const later = await create("Moved drop", 120_000);
		const gone = await create("Deleted drop", 9_000);

		// Asking twice: 201, then 200, one wait, one notice.
		const first = await http.post(`/api/products/${soon.id}/notify-me`, {}, eager.token);
		expect([first.status, first.body]).toEqual([201, { waiting: true, notifyAt: new Date(soon.saleAt - BEFORE_S * 1000).toISOString() }]);
		expect((await http.post(`/api/products/${soon.id}/notify-me`, {}, eager.token)).status).toBe(200);
		expect((await http.get(`/api/products/${soon.id}/notify-me`, eager.token)).body).toMatchObject({ waiting: true });
		// Asked, then withdrawn.
		expect((await http.post(`/api/products/${soon.id}/notify-me`, {}, doubter.token)).status).toBe(201);
		expect((await http.get("/api/admin/waitlist", admin)).body.waiting[soon.id]).toBe(2);
		expect((await http.del(`/api/products/${soon.id}/notify-me`, doubter.token)).body).toEqual({ waiting: false });
		expect((await http.get(`/api/products/${soon.id}/notify-me`, doubter.token)).body).toEqual({ waiting: false, notifyAt: null });
		expect((await http.post(`/api/products/${later.id}/notify-me`, {}, mover.token)).status).toBe(201);
		expect((await http.post(`/api/products/${gone.id}/notify-me`, {}, orphan.token)).status).toBe(201);
		expect((await http.get("/api/admin/waitlist", admin)).body.waiting).toEqual({ [soon.id]: 1, [later.id]: 1, [gone.id]: 1 });
		// Only an admin reads the counts.
		expect((await http.get("/api/admin/waitlist", eager.token)).status).toBe(403);

		// The reschedule: a few seconds ahead now. The deletion.
		const moved = Date.now() + 9_000;
		expect((await http.patch(`/api/admin/products/${later.id}`, { saleAt: new Date(moved).toISOString() }, admin)).status).toBe(200);
		expect((await http.del(`/api/admin/products/${gone.id}`, admin)).status).toBe(204);
		// Cancelled: the withdrawn one, the moved one's first notice, the deleted product's.
		const cancelled = () => sql<{ recipient: string }>(store.db, "SELECT recipient FROM deliveries WHERE kind = 'sale.opening' AND status = 'CANCELLED' ORDER BY recipient");
		await waitFor("the withdrawn, moved and deleted notices cancelled", async () => (await cancelled()).length === 3);
		expect((await cancelled()).map(r => r.recipient).sort()).toEqual([doubterAt, moverAt, orphanAt].sort());
		expect((await http.get("/api/admin/waitlist", admin)).body.waiting).toEqual({ [soon.id]: 1, [later.id]: 1 });

		const mails = () => smtp.server!.to().filter(m => m.subject.endsWith("goes on sale soon") || m.subject.includes("곧 판매가 시작됩니다"));
		await waitFor("both notices", () => mails().length >= 2, 30_000);
		const [toEager] = smtp.server!.to(eagerAt);
		const [toMover] = smtp.server!.to(moverAt);
		// Before the opening, and not before the notice time (the store and this test share the clock).
		expect(toEager.at).toBeGreaterThanOrEqual(soon.saleAt - BEFORE_S * 1000 - 50);
		expect(toEager.at).toBeLessThan(soon.saleAt);
		expect(toEager.text).toContain(`https://shop.example.com/p/${soon.id}`);
		const movedAt = Date.parse((await sql<{ sale_at: Date }>(store.db, "SELECT sale_at FROM products WHERE id = $1", [later.id]))[0].sale_at.toISOString());
		expect(toMover.at).toBeGreaterThanOrEqual(movedAt - BEFORE_S * 1000 - 50);
		expect(toMover.at).toBeLessThan(movedAt);
		expect(toMover.text).toContain(`/p/${later.id}`);

		// After every opening (and the deleted one's): still one each, none to the one who withdrew, none for the deleted product.
		await sleep(Math.max(soon.saleAt, gone.saleAt, moved) + 2_000 - Date.now());
		expect(smtp.server!.to(eagerAt)).toHaveLength(1);
		expect(smtp.server!.to(moverAt)).toHaveLength(1);
		expect(smtp.server!.to(doubterAt)).toHaveLength(0);
		expect(smtp.server!.to(orphanAt)).toHaveLength(0);
		expect(mails()).toHaveLength(2);
	});

	it("catches up at start with a reschedule and a deletion no waitlist node heard: the notice moves, the deleted product's is cancelled", async () => {
		let http = api(store.node.url);
		const admin = (await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" })).body.accessToken;
		const [stayer, leaver] = await seedBuyers(store.db, 2, "notifyc");
		const emailOf = async (id: string) => (await sql<{ email: string }>(store.db, "SELECT email FROM users WHERE id = $1", [id]))[0].email;
		const [stayerAt, leaverAt] = await Promise.all([emailOf(stayer.id), emailOf(leaver.id)]);
		const make = async (name: string) =>
			String((await http.post("/api/admin/products", { name, price: 1000, stock: 3, saleAt: new Date(Date.now() + 600_000).toISOString() }, admin)).body.product.id);
		const moved = await make("Moved unheard");
		const gone = await make("Deleted unheard");
		expect((await http.post(`/api/products/${moved}/notify-me`, {}, stayer.token)).status).toBe(201);
		expect((await http.post(`/api/products/${gone}/notify-me`, {}, leaver.token)).status).toBe(201);

		// The fault: the store runs without its waitlist service while the admin reschedules and deletes.
		await node.stop();
		node = await startNode({ ...NODE_ENV(), SERVICES: Object.keys(SERVICES).filter(name => name !== "waitlist").join(",") });
		http = api(store.node.url);
		const newSaleAt = Date.now() + 8_000;
		expect((await http.patch(`/api/admin/products/${moved}`, { saleAt: new Date(newSaleAt).toISOString() }, admin)).status).toBe(200);
		expect((await http.del(`/api/admin/products/${gone}`, admin)).status).toBe(204);
		await sleep(1_000);
		// It struck: nobody moved the waits; the notices still wait for the old openings.
		const waits = () => sql<{ product_id: string; sale_at: Date }>(store.db, "SELECT product_id::text, sale_at FROM sale_waits WHERE product_id = ANY($1::bigint[]) ORDER BY product_id", [[moved, gone]]);
		expect((await waits()).map(w => w.product_id)).toEqual([moved, gone].sort((a, b) => Number(a) - Number(b)));
		expect((await waits()).find(w => w.product_id === moved)!.sale_at.getTime()).not.toBe(new Date(newSaleAt).getTime());
		const notices = () => sql<{ recipient: string; status: string }>(store.db, "SELECT recipient, status FROM deliveries WHERE kind = 'sale.opening' AND recipient = ANY($1) ORDER BY id", [[stayerAt, leaverAt]]);
		expect((await notices()).map(n => n.status)).toEqual(["PENDING", "PENDING"]);

		// A node with the waitlist comes back: its start catches up.
		await node.stop();
		node = await startNode(NODE_ENV());
		const productSaleAt = (await sql<{ sale_at: Date }>(store.db, "SELECT sale_at FROM products WHERE id = $1", [moved]))[0].sale_at;
		// Each product is caught up in its own transaction, in either order: wait for both.
		const inStep = async () => {
			const w = await waits();
			return w.length === 1 && w[0].sale_at.getTime() === productSaleAt.getTime();
		};
		await waitFor("the waits in step with their products", inStep, 10_000);
		expect(await waits()).toEqual([{ product_id: moved, sale_at: productSaleAt }]);
		// The notifier applies cancels and new notices as they arrive on its channel.
		await waitFor("the old notices cancelled and the moved one published", async () => (await notices()).length === 3 && (await notices()).every(n => n.status !== "PENDING" || n.recipient === stayerAt));
		expect((await notices()).map(n => [n.recipient, n.status])).toEqual([
			[stayerAt, "CANCELLED"],
			[leaverAt, "CANCELLED"],
			[stayerAt, "PENDING"],
		]);
		// The moved notice arrives once, before the new opening; none for the deleted product.
		await waitFor("the moved notice", () => smtp.server!.to(stayerAt).length >= 1, 30_000);
		expect(smtp.server!.to(stayerAt)[0].at).toBeLessThan(newSaleAt);
		await sleep(Math.max(0, newSaleAt + 1_000 - Date.now()));
		expect(smtp.server!.to(stayerAt)).toHaveLength(1);
		expect(smtp.server!.to(leaverAt)).toHaveLength(0);
	});

	it("refuses what makes no sense, with a reason", async () => {
		const http = api(store.node.url);
		const admin = (await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" })).body.accessToken;
		const [buyer] = await seedBuyers(store.db, 1, "notifyr");
		const open = await http.post("/api/admin/products", { name: "Open drop", price: 1, stock: 1, saleAt: new Date(Date.now() - 1000).toISOString() }, admin);
		const r = await http.post(`/api/products/${open.body.product.id}/notify-me`, {}, buyer.token);
		expect([r.status, r.body.type]).toEqual([409, "SALE_OPEN"]);
		expect((await http.post("/api/products/999999/notify-me", {}, buyer.token)).body.type).toBe("PRODUCT_NOT_FOUND");
		expect((await http.post("/api/products/abc/notify-me", {}, buyer.token)).status).toBe(404);
		expect((await http.post(`/api/products/${open.body.product.id}/notify-me`, {})).status).toBe(401);
		expect((await http.del("/api/products/999999/notify-me", buyer.token)).body.type).toBe("PRODUCT_NOT_FOUND");
		// Withdrawing when not waiting is no error.
		expect((await http.del(`/api/products/${open.body.product.id}/notify-me`, buyer.token)).body).toEqual({ waiting: false });
	});
});
