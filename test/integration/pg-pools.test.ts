import { loadConfig } from "../../config";
import { createBroker } from "../../broker";
import { pgBudget } from "../../lib/pg-budget";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET } from "../helpers/nodes";
import { claim, createSale, seedBuyers, sleep } from "../helpers/sale";
import { CHANNELS } from "../../services/notifier/transports";

/**
 * Issue 21, point 4: every PostgreSQL pool of a node is sized by configuration (DB_POOL_SIZE for
 * the store's, AGENDA_POOL_SIZE for each Agenda pool), the node states its total, and what
 * PostgreSQL sees under load stays within it.
 */

const DB = freshDatabaseUrl("pgpools");
let node: StoreNode | null = null;

afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

describe("PostgreSQL pools", () => {
	it("counts a node's connections from the services it runs", () => {
		const budget = (env: Record<string, string>) => {
			const config = loadConfig({ JWT_SECRET: TEST_SECRET, LOG_LEVEL: "error", ...env }, CHANNELS);
			const broker = createBroker(config, { skipProcessEventRegistration: true });
			return pgBudget(config, broker.services);
		};
		// Defaults: one store pool of 5, Agenda pools of 3 for slots and notifier.
		expect(budget({})).toMatchObject({ total: 11, store: { size: 5 }, agenda: { size: 3, services: ["slots", "notifier"] } });
		expect(budget({ SERVICES: "api" }).total).toBe(0);
		expect(budget({ SERVICES: "users,products", DB_POOL_SIZE: "2" }).total).toBe(2);
		expect(budget({ DB_POOL_SIZE: "2", AGENDA_POOL_SIZE: "4" }).total).toBe(10);
		expect(() => loadConfig({ AGENDA_POOL_SIZE: "2" }, CHANNELS)).toThrow(/AGENDA_POOL_SIZE must be at least 3/);
		expect(() => loadConfig({ DB_POOL_SIZE: "0" }, CHANNELS)).toThrow(/DB_POOL_SIZE must be at least 1/);
	});

	it("never opens more than the configured pools, under a burst of claims", async () => {
		node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, DB_POOL_SIZE: "2", AGENDA_POOL_SIZE: "3", CLAIM_RATE_PER_SECOND: "1000", LOG_LEVEL: "error" });
		const product = await createSale(DB, 300);
		const buyers = await seedBuyers(DB, 400, "pool");
		const name = new URL(DB).pathname.slice(1);
		const seen = { store: 0, agenda: 0, total: 0 };
		let sampling = true;
		const sampler = (async () => {
			while (sampling) {
				const rows = await sql<{ app: string; n: string }>(DB, "SELECT application_name AS app, count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() GROUP BY 1", [name]);
				const by = Object.fromEntries(rows.map(r => [r.app, Number(r.n)]));
				seen.store = Math.max(seen.store, by["dopamine-store"] ?? 0);
				seen.agenda = Math.max(seen.agenda, by["dopamine-agenda"] ?? 0);
				seen.total = Math.max(seen.total, (by["dopamine-store"] ?? 0) + (by["dopamine-agenda"] ?? 0));
				await sleep(20);
			}
		})();
		let next = 0;
		const statuses: number[] = [];
		await Promise.all(
			Array.from({ length: 32 }, async () => {
				while (next < buyers.length) statuses.push((await claim(node!.url, product, buyers[next++])).status);
			})
		);
		sampling = false;
		await sampler;
		expect(statuses.filter(s => s === 201)).toHaveLength(300);
		// The pool was used to its size (a setting ignored would show the old 10), and never beyond.
		expect(seen.store).toBe(2);
		expect(seen.agenda).toBeGreaterThan(0);
		expect(seen.agenda).toBeLessThanOrEqual(6);
		expect(seen.total).toBeLessThanOrEqual(8);
	});
});
