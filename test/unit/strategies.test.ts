import type { Context, Endpoint } from "moleculer";
import { LocalFirstStrategy, ProductAffinityStrategy } from "../../lib/strategies";
import { ownerOf, score } from "../../lib/strategies/rendezvous";

/** Pure logic of the routing strategies: no broker, no transporter. */
const ep = (id: string, local = false) => ({ id, local }) as unknown as Endpoint;
const callFor = (productId: unknown) => ({ params: { productId } }) as unknown as Context;
const nodes = (n: number) => Array.from({ length: n }, (_, i) => `node-${i}`);
// The strategies' constructor arguments (registry, broker, opts) are not used by `select`.
const make = <T>(Cls: new (...a: any[]) => T): T => new Cls({}, { logger: console }, {});

describe("rendezvous hashing", () => {
	it("names the same owner whatever order the callers list the nodes in", () => {
		const ids = nodes(5);
		for (let p = 1; p <= 200; p++) {
			const owner = ownerOf(String(p), ids, x => x);
			expect(ownerOf(String(p), [...ids].reverse(), x => x)).toBe(owner);
			expect(ownerOf(String(p), [ids[3], ids[0], ids[4], ids[1], ids[2]], x => x)).toBe(owner);
		}
	});

	it("moves only the products of a node that leaves, and about 1/n of them to a node that joins", () => {
		const before = nodes(4);
		const products = Array.from({ length: 4000 }, (_, i) => String(i + 1));
		const owner = (ids: string[]) => new Map(products.map(p => [p, ownerOf(p, ids, x => x)!]));
		const was = owner(before);
		const afterLeave = owner(before.filter(id => id !== "node-2"));
		for (const p of products) if (was.get(p) !== "node-2") expect(afterLeave.get(p)).toBe(was.get(p));
		const afterJoin = owner([...before, "node-4"]);
		let moved = 0;
		for (const p of products) {
			if (afterJoin.get(p) !== was.get(p)) {
				moved++;
				expect(afterJoin.get(p)).toBe("node-4"); // a key moves only to the newcomer
			}
		}
		// 1/5 of 4,000 is 800; a fair hash lands well within ±25%.
		expect(moved).toBeGreaterThan(600);
		expect(moved).toBeLessThan(1000);
	});

	it("spreads products evenly over the nodes", () => {
		const ids = nodes(4);
		const counts = new Map<string, number>();
		for (let p = 1; p <= 8000; p++) {
			const o = ownerOf(String(p), ids, x => x)!;
			counts.set(o, (counts.get(o) ?? 0) + 1);
		}
		for (const id of ids) expect(counts.get(id)).toBeGreaterThan(1600); // 2,000 each if perfectly even
	});

	it("is a 32-bit score that depends on both the key and the node", () => {
		expect(score("1", "a")).toBe(score("1", "a"));
		expect(score("1", "a")).not.toBe(score("1", "b"));
		expect(score("1", "a")).not.toBe(score("2", "a"));
		expect(Number.isInteger(score("x", "y")) && score("x", "y") >= 0 && score("x", "y") < 2 ** 32).toBe(true);
		expect(ownerOf("1", [], x => x)).toBeUndefined();
	});
});

describe("ProductAffinity strategy", () => {
	it("sends every call for one product to its rendezvous owner, from any caller's list", () => {
		const s = make(ProductAffinityStrategy);
		const list = nodes(3).map(id => ep(id));
		for (let p = 1; p <= 50; p++) {
			const chosen = s.select(list, callFor(String(p)));
			expect(chosen.id).toBe(ownerOf(String(p), list, e => e.id)!.id);
			expect(s.select([...list].reverse(), callFor(String(p))).id).toBe(chosen.id);
		}
	});

	it("takes the first endpoint for a call without a product id, or with one endpoint", () => {
		const s = make(ProductAffinityStrategy);
		const list = nodes(3).map(id => ep(id));
		expect(s.select(list, callFor(undefined)).id).toBe("node-0");
		expect(s.select(list, callFor(42)).id).toBe("node-0");
		expect(s.select([ep("only")], callFor("7")).id).toBe("only");
	});
});

describe("LocalFirst strategy", () => {
	it("uses this node's endpoints while it has one, in turn", () => {
		const s = make(LocalFirstStrategy);
		const list = [ep("remote-1"), ep("local-a", true), ep("remote-2"), ep("local-b", true)];
		const picks = Array.from({ length: 10 }, () => s.select(list).id);
		expect(new Set(picks)).toEqual(new Set(["local-a", "local-b"]));
		expect(picks.filter(p => p === "local-a")).toHaveLength(5);
	});

	it("spreads over the remote endpoints when there is no local one", () => {
		const s = make(LocalFirstStrategy);
		const list = [ep("r1"), ep("r2"), ep("r3")];
		const picks = Array.from({ length: 9 }, () => s.select(list).id);
		for (const id of ["r1", "r2", "r3"]) expect(picks.filter(p => p === id)).toHaveLength(3);
	});
});
