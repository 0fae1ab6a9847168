import type { ServiceBroker } from "moleculer";
import { availableNodes } from "../../lib/registry";
import { checkOrder } from "../../lib/order-check";
import { ownerOf } from "../../lib/strategies/rendezvous";
import { METRICS } from "../../lib/store-metrics";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { allocatorWithFaults, installFaults } from "../helpers/faults";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { claim, ClaimReply, countBy, createSale, saleState, seedBuyers } from "../helpers/sale";

/** Several brokers in one process over real NATS, as Moleculer's own integration tests do. */

const allocatorNodes = (broker: ServiceBroker): string[] => availableNodes(broker, "allocator.claim");

async function loadedOn(nodes: StoreNode[], productId: string): Promise<string[]> {
	const out: string[] = [];
	for (const n of nodes) {
		if (!n.broker.getLocalService("allocator")) continue;
		const s: { loaded: boolean } = await n.broker.call("allocator.state", { productId }, { nodeID: n.broker.nodeID });
		if (s.loaded) out.push(n.broker.nodeID);
	}
	return out;
}

describe("placement by rendezvous hashing", () => {
	const keys = Array.from({ length: 3000 }, (_, i) => String(i + 1));

	it("names the same owner whatever order the nodes are listed in", () => {
		const nodes = ["a", "b", "c"];
		for (const k of keys.slice(0, 300)) expect(ownerOf(k, nodes, x => x)).toBe(ownerOf(k, [...nodes].reverse(), x => x));
	});

	it("spreads products evenly and moves only about a quarter when a fourth node joins", () => {
		const three = ["node-1", "node-2", "node-3"];
		const four = [...three, "node-4"];
		const before = keys.map(k => ownerOf(k, three, x => x));
		const after = keys.map(k => ownerOf(k, four, x => x));
		const share = countBy(before, x => x!);
		for (const n of three) expect(share[n] / keys.length).toBeGreaterThan(0.28);
		const moved = before.filter((o, i) => o !== after[i]).length / keys.length;
		expect(moved).toBeGreaterThan(0.18);
		expect(moved).toBeLessThan(0.34);
		// Every moved product went to the new node.
		expect(before.every((o, i) => o === after[i] || after[i] === "node-4")).toBe(true);
	});
});

describe("a cluster over NATS", () => {
	const DB = freshDatabaseUrl("cluster");
	const NS = freshNamespace("cluster");
	let nodes: StoreNode[] = [];
	const env = (id: string, services: string) => ({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: NS, NODE_ID: id, SERVICES: services, SOLD_OUT_LEASE_MS: "60000", CLAIM_RATE_PER_SECOND: "100" });

	beforeAll(async () => {
		// Two gateways; allocators on two nodes, one of them a gateway too.
		nodes = [
			await startNode(env("core", "users,products,slots,allocator")),
			await startNode(env("gw-1", "api")),
			await startNode(env("gw-2", "api,allocator")),
		];
		for (const gw of nodes.slice(1)) await waitFor("both allocators seen", () => allocatorNodes(gw.broker).length === 2);
	});
	afterAll(async () => {
		for (const n of nodes) await n.stop();
		await dropDatabase(DB);
	});

	it("sells exactly N per product through both gateways at once, each product served by one node", async () => {
		const stock = 20;
		const products = await Promise.all([1, 2, 3, 4, 5, 6].map(() => createSale(DB, stock)));
		const buyers = await seedBuyers(DB, 50, "cl");
		const [gw1, gw2] = [nodes[1], nodes[2]];
		const replies = await Promise.all(
			products.flatMap(p => buyers.map((b, i) => claim((i % 2 ? gw1 : gw2).url, p, b).then(r => ({ ...r, product: p }))))
		);
		expect(replies.filter(r => r.status >= 500)).toEqual([]);
		for (const p of products) {
			const mine = replies.filter(r => r.product === p);
			expect(countBy(mine, r => r.type).GRANTED).toBe(stock);
			expect(await saleState(DB, p)).toMatchObject({ held: stock, available: 0, distinctHolders: stock, maxActivePerBuyer: 1 });
			expect(checkOrder(mine).problems).toEqual([]);
			// One owner: one epoch in every answer, the actor loaded on exactly the node the hash names.
			expect(new Set(mine.filter(r => r.epoch !== undefined).map(r => r.epoch)).size).toBe(1);
			expect(await loadedOn(nodes, p)).toEqual([ownerOf(p, ["core", "gw-2"], x => x)]);
		}
		// Both allocator nodes took part, so gw-2 really called past its own allocator.
		const owners = new Set(products.map(p => ownerOf(p, ["core", "gw-2"], x => x)));
		expect(owners.size).toBe(2);
	});

	it("lets a gateway that starts mid-sale answer SOLD_OUT from the flags it learns", async () => {
		const p = await createSale(DB, 2);
		const buyers = await seedBuyers(DB, 4, "mid");
		await claim(nodes[1].url, p, buyers[0]);
		await claim(nodes[1].url, p, buyers[1]);
		expect((await claim(nodes[1].url, p, buyers[2])).type).toBe("SOLD_OUT");
		const late = await startNode(env("gw-late", "api"));
		nodes.push(late);
		await waitFor("the late gateway to see the allocators", () => allocatorNodes(late.broker).length === 2);
		await waitFor("the late gateway to learn the flag", async () => (await claim(late.url, p, buyers[3])).epoch === undefined, 5000);
		const r = await claim(late.url, p, buyers[3]);
		expect([r.status, r.type, r.epoch]).toEqual([409, "SOLD_OUT", undefined]);
	});
});

describe("fencing", () => {
	it("refuses a stale owner's commit, so two actors that both believe they own a product grant exactly N", async () => {
		// Two single-process nodes on one database: each is sure it owns every product.
		const DB = freshDatabaseUrl("fence");
		const a = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, NODE_ID: "fence-a" });
		const b = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, NODE_ID: "fence-b" });
		try {
			const p = await createSale(DB, 30);
			const buyers = await seedBuyers(DB, 120, "fence");
			const replies: ClaimReply[] = [];
			// Waves alternate between the two owners, so each takeover fences the other.
			for (let wave = 0; wave < 8; wave++) {
				const slice = buyers.slice(wave * 15, wave * 15 + 15);
				replies.push(...(await Promise.all(slice.map((buyer, i) => claim((i + wave) % 2 ? a.url : b.url, p, buyer)))));
			}
			const metric = (n: StoreNode) => {
				const values = n.broker.metrics.getMetric(METRICS.commitFailures)?.snapshot() ?? [];
				return values.filter((v: any) => v.labels.reason === "FENCED").reduce((s: number, v: any) => s + v.value, 0);
			};
			expect(metric(a) + metric(b)).toBeGreaterThan(0);
			expect(replies.filter(r => r.status >= 500)).toEqual([]);
			expect(countBy(replies, r => r.type).GRANTED).toBe(30);
			expect(await saleState(DB, p)).toMatchObject({ held: 30, available: 0, distinctHolders: 30, maxActivePerBuyer: 1 });
			expect(checkOrder(replies).problems).toEqual([]);
			const epochs = await sql<{ epoch: number }>(DB, "SELECT epoch FROM products WHERE id = $1", [p]);
			expect(epochs[0].epoch).toBeGreaterThan(2);
		} finally {
			await a.stop();
			await b.stop();
			await dropDatabase(DB);
		}
	});
});

describe("circuit breaker", () => {
	const faults = installFaults();

	it("opens on a node that stopped answering, moves its products to the next node, and answers no 500", async () => {
		const DB = freshDatabaseUrl("breaker");
		const NS = freshNamespace("breaker");
		const env = (id: string, services: string) => ({
			DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: NS, NODE_ID: id, SERVICES: services, REQUEST_TIMEOUT_MS: "1000",
		});
		const nodes = [
			await startNode(env("brk-gw", "api")),
			await startNode(env("brk-a", "allocator"), { allocator: allocatorWithFaults(faults) }),
			await startNode(env("brk-b", "allocator,products")),
		];
		try {
			const [gw] = nodes;
			await waitFor("both allocators seen", () => allocatorNodes(gw.broker).length === 2);
			// A product the hash gives to brk-a, whose commits now hang: the node takes claims and never answers.
			let p = "";
			while (!p || ownerOf(p, ["brk-a", "brk-b"], x => x) !== "brk-a") p = await createSale(DB, 10);
			faults.hangCommitsUntilStopped(p);
			const buyers = await seedBuyers(DB, 80, "brk");
			// Enough claims at once to fill the breaker's window (20 requests, half failing) with timeouts.
			const first = await Promise.all(buyers.slice(0, 40).map(b => claim(gw.url, p, b)));
			expect(faults.strikes(p)).toBeGreaterThanOrEqual(1);
			expect(first.filter(r => r.status === 500)).toEqual([]);
			// Once the breaker opened, brk-b took the product over and sells it, while brk-a still hangs.
			const rest: ClaimReply[] = [];
			for (const b of buyers.slice(40)) rest.push(await claim(gw.url, p, b));
			expect(rest.filter(r => r.status >= 500)).toEqual([]);
			expect(countBy([...first, ...rest], r => r.type).GRANTED).toBe(10);
			expect(await loadedOn(nodes, p)).toContain("brk-b");
			expect(await saleState(DB, p)).toMatchObject({ held: 10, distinctHolders: 10, maxActivePerBuyer: 1 });
		} finally {
			faults.disarm();
			for (const n of nodes) await n.stop();
			await dropDatabase(DB);
		}
	});
});
