import { Client } from "pg";
import { api } from "../helpers/http";
import { createSale } from "../helpers/sale";
import { storeForFile } from "../helpers/store";

/**
 * Issue 22, point 2: the product cache is not bypassed by a query string, and health probes and
 * made-up product ids cost no query per request. Queries are counted at the PostgreSQL driver
 * (pg's Client.query, which TypeORM uses), in this process, where the node runs.
 */
const store = storeForFile("seccache", { SERVICES: "api,products", PRODUCT_CACHE_TTL_SECONDS: "1" });

let queries = 0;
const original = Client.prototype.query;
beforeAll(() => {
	Client.prototype.query = function (this: Client, ...args: unknown[]) {
		queries++;
		return (original as (...a: unknown[]) => unknown).apply(this, args);
	} as typeof original;
});
afterAll(() => {
	Client.prototype.query = original;
});

/** Fires `n` requests, 20 at a time; returns the queries they cost and how long they took. */
async function cost(n: number, path: (i: number) => string, expectStatus: number): Promise<{ queries: number; seconds: number }> {
	const http = api(store.node.url);
	const before = queries;
	const start = Date.now();
	for (let i = 0; i < n; i += 20) {
		const replies = await Promise.all(Array.from({ length: Math.min(20, n - i) }, (_, j) => http.get(path(i + j))));
		for (const r of replies) expect(r.status).toBe(expectStatus);
	}
	return { queries: queries - before, seconds: (Date.now() - start) / 1000 };
}

/** At most this many queries: five reads of the list (two statements each) per second begun, and a little background. */
const bound = (seconds: number) => 10 * Math.ceil(seconds + 0.01) + 6;

describe("the product cache and the public reads", () => {
	it("a query string per request does not bypass the product list's cache", async () => {
		await createSale(store.db, 3);
		const r = await cost(300, i => `/api/products?b=${i}`, 200);
		// The counter counts: the list was read at least once.
		expect(r.queries).toBeGreaterThan(0);
		expect(r.queries).toBeLessThanOrEqual(bound(r.seconds));
	});

	it("lookups of product ids that do not exist cost no query per request", async () => {
		const r = await cost(300, i => `/api/products/${900000 + i}`, 404);
		expect(r.queries).toBeLessThanOrEqual(bound(r.seconds));
	});

	it("a product that exists is still found, whatever its query string", async () => {
		const id = await createSale(store.db, 2);
		// Made straight in the database, so no products.changed: it shows once the list's TTL lapsed.
		await new Promise(r => setTimeout(r, 1200));
		const r = await cost(100, i => `/api/products/${id}?x=${i}`, 200);
		expect(r.queries).toBeLessThanOrEqual(bound(r.seconds) + 2);
	});

	it("/api/health costs no query per request", async () => {
		const r = await cost(300, () => "/api/health", 200);
		expect(r.queries).toBeLessThanOrEqual(Math.ceil(r.seconds) + 3);
	});
});
