import type { ServiceBroker } from "moleculer";
import { availableNodes } from "../../lib/registry";
import { checkOrder } from "../../lib/order-check";
import { ownerOf } from "../../lib/strategies/rendezvous";
import { dropDatabase, freshDatabaseUrl } from "../helpers/db";
import { ChildNode, freshNamespace, NATS_URL, spawnNode, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { Buyer, claim, ClaimReply, countBy, createSale, saleState, seedBuyers, sleep } from "../helpers/sale";

/**
 * Allocator nodes as real processes (node dist/server.js) that are killed and started under a
 * paced stream of claims through a gateway in the test process.
 */
const FAST = { HEARTBEAT_INTERVAL_SECONDS: "1", HEARTBEAT_TIMEOUT_SECONDS: "3", REQUEST_TIMEOUT_MS: "1500", LOG_LEVEL: "warn" };

const allocatorNodes = (broker: ServiceBroker): string[] => availableNodes(broker, "allocator.claim");

interface Timed extends ClaimReply {
	product: string;
	sentAt: number;
}

/** Sends one claim every `everyMs` without waiting for answers; resolves when all are answered. */
async function pacedStream(url: string, plan: { product: string; buyer: Buyer }[], everyMs: number, onSent?: (i: number) => void): Promise<Timed[]> {
	const pending: Promise<Timed>[] = [];
	for (let i = 0; i < plan.length; i++) {
		const { product, buyer } = plan[i];
		const sentAt = Date.now();
		pending.push(claim(url, product, buyer).then(r => ({ ...r, product, sentAt })));
		onSent?.(i);
		await sleep(everyMs);
	}
	return Promise.all(pending);
}

/** Keeps demand going until the product is sold out in the database. */
async function sellOut(url: string, product: string, buyers: Buyer[]): Promise<ClaimReply[]> {
	const out: ClaimReply[] = [];
	for (let round = 0; round < 5; round++) {
		out.push(...(await Promise.all(buyers.map(b => claim(url, product, b)))));
		if (out.some(r => r.type === "SOLD_OUT")) break;
		await sleep(300);
	}
	return out;
}

describe("failover", () => {
	const DB = freshDatabaseUrl("failover");
	let gateway: StoreNode | undefined;
	const children: ChildNode[] = [];

	afterEach(async () => {
		for (const c of children.splice(0)) await c.stop("SIGKILL");
		await gateway?.stop();
		gateway = undefined;
	});
	afterAll(async () => {
		await dropDatabase(DB);
	});

	async function cluster(namespace: string, allocatorIds: string[]) {
		const env = { DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: namespace, ...FAST };
		gateway = await startNode({ ...env, NODE_ID: "gw", SERVICES: "api" });
		for (const id of allocatorIds) children.push(spawnNode({ ...env, NODE_ID: id, SERVICES: "allocator", METRICS_PORT: "0", PORT: "0" }));
		await waitFor("the allocators to join", () => allocatorNodes(gateway!.broker).length === allocatorIds.length, 30_000).catch(err => {
			throw new Error(`${err.message}\n${children.map(c => c.output()).join("\n---\n")}`);
		});
		return env;
	}

	it("keeps selling exactly N when the owner is killed -9 mid-stream, and answers every claim", async () => {
		await cluster(freshNamespace("loss"), ["alloc-1", "alloc-2"]);
		let product = "";
		while (!product || ownerOf(product, ["alloc-1", "alloc-2"], x => x) !== "alloc-1") product = await createSale(DB, 60);
		const buyers = await seedBuyers(DB, 200, "loss");
		let killedAt = Infinity;
		// 160 claims, one every 50 ms; the owner dies after the 20th.
		const replies = await pacedStream(url(), buyers.slice(0, 160).map(buyer => ({ product, buyer })), 50, i => {
			if (i === 20) {
				killedAt = Date.now();
				children[0].proc.kill("SIGKILL");
			}
		});
		// The fault struck: claims answered by alloc-1's epoch before the kill, by a newer epoch after.
		if (process.env.DEBUG_FAILOVER) console.log(replies.map(r => `${r.sentAt - killedAt} ${r.status} ${r.type} ${r.epoch ?? "-"} ${r.seq ?? "-"} ${r.ms} ${r.buyer}`).join("\n"));
		const before = replies.filter(r => r.sentAt < killedAt && r.sentAt + r.ms < killedAt);
		const oldEpoch = Math.max(...before.map(r => r.epoch!));
		const after = replies.filter(r => r.sentAt > killedAt && r.epoch !== undefined);
		expect(before.length).toBeGreaterThan(10);
		expect(before.every(r => r.type === "GRANTED" && r.epoch === oldEpoch)).toBe(true);
		expect(after.length).toBeGreaterThan(10);
		expect(after.every(r => r.epoch! > oldEpoch)).toBe(true);
		const state: { loaded: boolean } = await gateway!.broker.call("allocator.state", { productId: product }, { nodeID: "alloc-2" });
		expect(state.loaded).toBe(true);
		// Every claim was answered, none with a 500, the unlucky ones with 503 and Retry-After, within seconds.
		expect(replies.filter(r => r.status === 500 || r.status === 0)).toEqual([]);
		for (const r of replies.filter(r => r.status === 503)) expect(r.retryAfter).toBe("1");
		expect(Math.max(...replies.map(r => r.ms))).toBeLessThan(12_000);
		expect(checkOrder(replies).problems).toEqual([]);
		await sellOut(url(), product, buyers);
		expect(await saleState(DB, product)).toMatchObject({ held: 60, available: 0, distinctHolders: 60, maxActivePerBuyer: 1 });
	});

	it("moves some products to a node that joins mid-stream, and sells exactly N of each", async () => {
		const env = await cluster(freshNamespace("join"), ["join-1"]);
		// Stock outlasts the stream, so every product is still on sale whenever join-2 arrives.
		const products = await Promise.all([1, 2, 3, 4, 5, 6].map(() => createSale(DB, 50)));
		const movers = products.filter(p => ownerOf(p, ["join-1", "join-2"], x => x) === "join-2");
		expect(movers.length).toBeGreaterThan(0);
		const buyers = await seedBuyers(DB, 60, "join");
		let joinedAt = Infinity;
		// 40 buyers x 6 products, one claim every 15 ms (about 3.6 s); join-2 starts after 0.6 s.
		const plan = buyers.slice(0, 40).flatMap(buyer => products.map(product => ({ product, buyer })));
		const replies = await pacedStream(url(), plan, 15, i => {
			if (i === 40) {
				joinedAt = Date.now();
				children.push(spawnNode({ ...env, NODE_ID: "join-2", SERVICES: "allocator", METRICS_PORT: "0", PORT: "0" }));
			}
		});
		await waitFor("join-2 to be seen", () => allocatorNodes(gateway!.broker).length === 2, 20_000);
		const after: Timed[] = [];
		for (const p of products) after.push(...(await sellOut(url(), p, buyers)).map(r => ({ ...r, product: p, sentAt: Date.now() })));
		const all = [...replies, ...after] as Timed[];
		expect(all.filter(r => r.status === 500)).toEqual([]);
		for (const p of products) {
			expect(checkOrder(all.filter(r => r.product === p)).problems).toEqual([]);
			expect(await saleState(DB, p)).toMatchObject({ held: 50, available: 0, distinctHolders: 50, maxActivePerBuyer: 1 });
		}
		// The products the hash gives to join-2 were taken over there, shown by a newer epoch...
		for (const p of movers) {
			const s: { loaded: boolean } = await gateway!.broker.call("allocator.state", { productId: p }, { nodeID: "join-2" });
			expect(s.loaded).toBe(true);
			const mine = all.filter(r => r.product === p && r.epoch !== undefined);
			const early = Math.max(...mine.filter(r => r.sentAt < joinedAt).map(r => r.epoch!));
			expect(Math.max(...mine.map(r => r.epoch!))).toBeGreaterThan(early);
		}
		// ...and the others stayed where they were: one epoch throughout.
		for (const p of products.filter(p => !movers.includes(p)))
			expect(new Set(all.filter(r => r.product === p && r.epoch !== undefined).map(r => r.epoch)).size).toBe(1);
		void countBy;
	});

	const url = () => gateway!.url;
});
