import { availableNodes } from "../../lib/registry";
import { publishMessages } from "../../mixins/notify.mixin";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { ChildNode, freshNamespace, NATS_URL, spawnNode, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { runRepl } from "../helpers/repl";
import { claim, createSale, seedBuyers } from "../helpers/sale";

/**
 * `npm run repl` against a running cluster: the REPL's node joins over NATS in the middle of a sale
 * and runs no service, so no product moves to it; its commands still reach the cluster.
 */
describe("a REPL that only watches", () => {
	const DB = freshDatabaseUrl("repl_watch");
	const NS = freshNamespace("replw");
	const env = { DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: NS, LOG_LEVEL: "warn" };
	let store: StoreNode;
	let repl: ChildNode | undefined;

	beforeAll(async () => {
		store = await startNode({ ...env, NODE_ID: "store-1" });
	});

	afterAll(async () => {
		await repl?.stop();
		await store?.stop();
		await dropDatabase(DB);
	});

	it("joins mid-sale, takes no product over, and its commands work against the cluster", async () => {
		// Eight products on sale, each with a live actor on the only allocator. Were the REPL's node an
		// allocator, rendezvous hashing would hand it about half of them.
		const products: string[] = [];
		for (let i = 0; i < 8; i++) products.push(await createSale(DB, 5));
		const buyers = await seedBuyers(DB, 16, "replw");
		for (const [i, p] of products.entries()) expect((await claim(store.url, p, buyers[i])).status).toBe(201);

		// NODE_ID of the node beside it must not become the REPL's own id.
		repl = spawnNode({ ...env, NODE_ID: "store-1", METRICS_PORT: "0" }, ["--repl"]);
		await waitFor("the REPL prompt", () => /mol \$/.test(repl!.output()), 30_000);
		type Seen = { id: string; services: { name: string }[] };
		const nodes = () => (store.broker.registry as unknown as { getNodeList(o: object): Seen[] }).getNodeList({ onlyAvailable: true, withServices: true });
		const replId = () => nodes().map(n => n.id).find(id => id.startsWith("repl-"));
		await waitFor("the store to see the REPL's node", () => !!replId(), 20_000);
		const seen = nodes().find(n => n.id === replId())!;
		expect(seen.services.map(s => s.name)).toEqual(["$node"]);
		expect(availableNodes(store.broker, "allocator.claim")).toEqual(["store-1"]);

		// Its commands are answered by the cluster: every product still owned by the store's node.
		const owners = await runRepl(repl, "owners", /^(?=[\s\S]*allocator nodes: )[\s\S]*(\n\S+\s+Test drop\s+\S+\s+\d+\s+\S+[^\n]*\n){8}/);
		expect(owners).toContain("allocator nodes: store-1\n");
		for (const p of products) expect(owners).toMatch(new RegExp(`\\n${p}\\s+Test drop\\s+store-1\\s+\\d+\\s+yes`));

		// The sale goes on where it was: the next claims are granted by the same actors.
		for (const [i, p] of products.entries()) expect((await claim(store.url, p, buyers[8 + i])).status).toBe(201);
		for (const p of products) {
			const s: { loaded: boolean } = await store.broker.call("allocator.state", { productId: p }, { nodeID: "store-1" });
			expect(s.loaded).toBe(true);
		}
		expect(await runRepl(repl, `sale ${products[0]}`, /owner \S+/)).toMatch(/stock 5\s+held 2\s+paid 0\s+expired 0\s+remaining 3[\s\S]*owner store-1/);

		// An admin action from the REPL is carried out by the store's products service.
		const saleAt = new Date(Date.now() + 3_600_000).toISOString();
		const created = await runRepl(repl, `admin products.create --name "From the REPL" --price 900 --stock 2 --saleAt ${saleAt}`, /\n\}\s*\n/);
		const product = JSON.parse(created.slice(created.indexOf("{"))).product;
		expect(await sql(DB, "SELECT name, stock FROM products WHERE id = $1", [product.id])).toEqual([{ name: "From the REPL", stock: 2 }]);

		// Failed deliveries sent again in bulk, by kind, from the REPL.
		const noAddress = (i: number, kind: string) => ({ kind, channel: "email" as const, recipient: "", subject: `No address ${i}`, text: "-", dedupeKey: `${kind}-${i}` });
		await publishMessages(store.broker, [noAddress(1, "repl.bulk"), noAddress(2, "repl.bulk"), noAddress(3, "repl.other")]);
		await waitFor("three FAILED", async () => (await sql(DB, "SELECT 1 FROM deliveries WHERE kind LIKE 'repl.%' AND status = 'FAILED'")).length === 3);
		expect(await runRepl(repl, "resend-failed --kind repl.bulk", /queued to be sent again\./)).toContain("2 failed deliveries queued to be sent again.");
		expect(await runRepl(repl, `resend-failed --until ${new Date(Date.now() - 3_600_000).toISOString()}`, /queued to be sent again\./)).toContain("0 failed deliveries queued to be sent again.");
		expect(await runRepl(repl, "resend-failed --since yesterday", /ERROR/)).toMatch(/ERROR: .*VALIDATION_ERROR 422/);
	});
});
