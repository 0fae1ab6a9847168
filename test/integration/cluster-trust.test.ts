import { ServiceBroker } from "moleculer";
import { signFlag, signIdentity } from "../../lib/identity";
import { availableNodes } from "../../lib/registry";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { track, untrack } from "../helpers/resources";
import { claim, createSale, seedBuyers } from "../helpers/sale";

/**
 * Issue 22, point 1: a node on NATS is not a user. An intruder broker joins the store's NAMESPACE
 * on the shared NATS (it has the NATS credentials: there are none here) but not the nodes' secret.
 */
const NODE_SECRET = "node-secret-of-the-store-at-least-32-bytes!";
const WRONG_SECRET = "a-guess-at-the-node-secret-at-least-32-bytes";

describe("trust inside the cluster", () => {
	const DB = freshDatabaseUrl("trust");
	const NS = freshNamespace("trust");
	let nodes: StoreNode[] = [];
	let intruder: ServiceBroker;
	const intruderKey = {};
	const env = (id: string, services: string) => ({
		DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, NODE_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: NS, NODE_ID: id, SERVICES: services,
		SOLD_OUT_LEASE_MS: "2000", CLAIM_RATE_PER_SECOND: "100",
	});

	beforeAll(async () => {
		nodes = [await startNode(env("core", "users,products,slots,notifier,sales")), await startNode(env("gw", "api,allocator"))];
		intruder = new ServiceBroker({ namespace: NS, nodeID: "intruder", transporter: NATS_URL, logger: false, heartbeatInterval: 1, heartbeatTimeout: 4 });
		track(intruderKey, { name: "intruder broker", close: () => intruder.stop() });
		await intruder.start();
		const wanted = ["users.setRole", "notifier.list", "notifier.resend", "products.create", "slots.expire", "sales.report", "allocator.claim"];
		await waitFor("the intruder sees the store's actions", () => wanted.every(a => availableNodes(intruder, a).length > 0));
	});
	afterAll(async () => {
		await intruder?.stop();
		untrack(intruderKey);
		for (const n of nodes.reverse()) await n.stop();
		await dropDatabase(DB);
	});

	const refusal = (p: Promise<unknown>) => p.then(
		ok => ({ ok }),
		(err: { code?: number; type?: string }) => ({ code: err.code, type: err.type })
	);

	it("refuses every admin action called without an identity, with a forged meta.user, or with an identity not signed by a node", async () => {
		const [buyer] = await seedBuyers(DB, 1, "trust");
		const product = await createSale(DB, 1);
		const [slot] = await sql<{ id: string }>(DB, "SELECT id::text FROM slots WHERE product_id = $1 LIMIT 1", [product]);
		const calls: [string, Record<string, unknown>][] = [
			["users.setRole", { id: buyer.id, role: "admin" }],
			["notifier.list", {}],
			["notifier.resend", { id: "1" }],
			["products.create", { name: "Forged drop", price: 1, stock: 1, saleAt: new Date(Date.now() + 3_600_000).toISOString() }],
			["slots.expire", { slotId: slot.id }],
			["sales.report", { productId: product }],
		];
		const forgedAdmin = { id: buyer.id, role: "admin" as const };
		const metas: [string, Record<string, unknown> | undefined][] = [
			["no meta", undefined],
			["meta.user as admin", { user: forgedAdmin }],
			["identity signed with a guessed secret", { user: forgedAdmin, identity: signIdentity(WRONG_SECRET, forgedAdmin) }],
			["identity signed unsigned-looking", { identity: "i1.eyJzdWIiOiIxIiwicm9sZSI6ImFkbWluIn0.AAAA" }],
		];
		const answers: Record<string, unknown> = {};
		for (const [action, params] of calls)
			for (const [label, meta] of metas) answers[`${action} / ${label}`] = await refusal(intruder.call(action, params, meta ? { meta } : {}));
		for (const [key, answer] of Object.entries(answers)) expect([key, answer]).toEqual([key, { code: 401, type: "UNAUTHORIZED" }]);
		// Nothing happened: the buyer is a buyer, no product was made, the product is as it was.
		expect(await sql(DB, "SELECT role FROM users WHERE id = $1", [buyer.id])).toEqual([{ role: "buyer" }]);
		expect(await sql(DB, "SELECT count(*)::int AS n FROM products WHERE name = 'Forged drop'")).toEqual([{ n: 0 }]);

		// The same call with an identity a node signed goes through: the refusals above are the identity's.
		const signed = { meta: { identity: signIdentity(NODE_SECRET, { id: "repl", role: "admin" }) } };
		await expect(intruder.call("sales.report", { productId: product }, signed)).resolves.toMatchObject({ report: { product: { id: product } } });
		// A buyer's signed identity is refused on an admin action (403), and accepted where a buyer acts for itself.
		const asBuyer = { meta: { identity: signIdentity(NODE_SECRET, { id: buyer.id, role: "buyer" }) } };
		expect(await refusal(intruder.call("users.setRole", { id: buyer.id, role: "admin" }, asBuyer))).toEqual({ code: 403, type: "FORBIDDEN" });
		await expect(intruder.call("users.me", {}, asBuyer)).resolves.toMatchObject({ user: { id: buyer.id, role: "buyer" } });
		expect(await refusal(intruder.call("users.me", {}, { meta: { user: { id: buyer.id, role: "buyer" } } }))).toEqual({ code: 401, type: "UNAUTHORIZED" });
	});

	it("refuses a claim for a buyer from a node without the secret: the buyer is the signed identity, never a parameter", async () => {
		const [buyer] = await seedBuyers(DB, 1, "claimfor");
		const product = await createSale(DB, 3);
		const forged = { id: buyer.id, role: "buyer" as const };
		for (const meta of [undefined, { user: forged }, { identity: signIdentity(WRONG_SECRET, forged) }])
			expect(await refusal(intruder.call("allocator.claim", { productId: product, userId: buyer.id }, meta ? { meta } : {}))).toEqual({ code: 401, type: "UNAUTHORIZED" });
		expect(await sql(DB, "SELECT count(*)::int AS n FROM slots WHERE product_id = $1 AND user_id IS NOT NULL", [product])).toEqual([{ n: 0 }]);
		// Signed by a node, the same call claims for that buyer (and a userId parameter is ignored).
		const signed = { meta: { identity: signIdentity(NODE_SECRET, forged) } };
		await expect(intruder.call("allocator.claim", { productId: product }, signed)).resolves.toMatchObject({ outcome: "GRANTED" });
		expect(await sql(DB, "SELECT user_id::text AS u FROM slots WHERE product_id = $1 AND user_id IS NOT NULL", [product])).toEqual([{ u: buyer.id }]);
	});

	it("an identity expires: one signed more than a minute ago is refused", async () => {
		const old = signIdentity(NODE_SECRET, { id: "repl", role: "admin" }, Date.now() - 61_000);
		expect(await refusal(intruder.call("notifier.list", {}, { meta: { identity: old } }))).toEqual({ code: 401, type: "UNAUTHORIZED" });
	});

	it("a forged sold-out flag does not stop a sale; a flag the nodes signed does (so the broadcast reaches the gateway)", async () => {
		const gw = nodes[1];
		const [forgedTarget, signedTarget] = [await createSale(DB, 5), await createSale(DB, 5)];
		const buyers = await seedBuyers(DB, 4, "flag");
		const huge = 2 ** 40;
		const forged = { productId: forgedTarget, epoch: huge, version: huge, soldOut: true, leaseMs: 3_600_000 };
		// Unsigned; signed with a guessed secret; and a node-signed flag whose lease is stretched past the setting.
		intruder.broadcast("allocator.flag", forged);
		intruder.broadcast("allocator.flag", signFlag(WRONG_SECRET, forged));
		intruder.broadcast("allocator.flag", signFlag(NODE_SECRET, forged));
		// The control: a flag the nodes' secret signed, with the store's own lease, is applied.
		intruder.broadcast("allocator.flag", signFlag(NODE_SECRET, { productId: signedTarget, epoch: huge, version: huge, soldOut: true, leaseMs: 2000 }));
		await waitFor("the signed flag applied at the gateway", async () => (await claim(gw.url, signedTarget, buyers[0])).type === "SOLD_OUT", 10_000);
		// Flags are applied in the order they arrive from one sender: the forged ones, sent first, have arrived.
		const answers = await Promise.all(buyers.slice(1).map(b => claim(gw.url, forgedTarget, b)));
		expect(answers.map(a => [a.status, a.type])).toEqual(buyers.slice(1).map(() => [201, "GRANTED"]));
	});
});
