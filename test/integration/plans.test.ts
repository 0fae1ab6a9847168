import { Client } from "pg";
import { openDatabase } from "../../entities";
import { INDEX_PATHS_ONLY } from "../../lib/sql";
import { expireSql, freeCountSql, grantBatchSql, grantRowsSql, liveUnitsSql } from "../../store/slots";
import { outboxLeftPendingSql, outboxOfSlotsSql } from "../../store/outbox";
import { saleCountsSql } from "../../store/products";
import { dropDatabase, freshDatabaseUrl } from "../helpers/db";

/**
 * The plans of the sale's hot statements at production sizes: a product of 200,000 units (30,000
 * of them held, 5,000 expired) among 1,000,000 users, with the statistics of a database analyzed
 * when it held one tiny product (autovacuum off on those tables, so they stay that stale), then
 * freshly analyzed. Each statement runs as the store runs it (INDEX_PATHS_ONLY first, in its
 * transaction, rolled back after) under EXPLAIN ANALYZE: no Seq Scan on slots or users, and a
 * time bound that the old plans missed by far (957 ms for 150 grants at 40,000 units).
 */

const DB = freshDatabaseUrl("plans");
const STOCK = 200_000;
const USERS = 1_000_000;
const HELD = 30_000;
const EXPIRED = 5_000;
let c: Client;
let product: string;
let epoch: number;

interface PlanNode {
	"Node Type": string;
	"Relation Name"?: string;
	Plans?: PlanNode[];
}

function seqScans(node: PlanNode, out: string[] = []): string[] {
	if (node["Node Type"] === "Seq Scan" && (node["Relation Name"] === "slots" || node["Relation Name"] === "users")) out.push(node["Relation Name"]);
	for (const child of node.Plans ?? []) seqScans(child, out);
	return out;
}

/** EXPLAIN of one statement as the store runs it (or, `indexPathsOnly: false`, as it used to). */
async function explain(text: string, params: unknown[], indexPathsOnly = true): Promise<{ scans: string[]; ms: number }> {
	await c.query(indexPathsOnly ? `BEGIN; ${INDEX_PATHS_ONLY}` : "BEGIN");
	try {
		const { rows } = await c.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, params);
		const [plan] = rows[0]["QUERY PLAN"] as { Plan: PlanNode; "Execution Time": number }[];
		return { scans: seqScans(plan.Plan), ms: plan["Execution Time"] };
	} finally {
		await c.query("ROLLBACK");
	}
}

/** A batch of `n` grants as the actor would send it: free units, buyers with no slot, fresh seqs. */
async function batch(n: number, pipelined: boolean): Promise<unknown[]> {
	const free = (await c.query(`SELECT id FROM slots WHERE product_id = $1 AND status = 'AVAILABLE' ORDER BY unit LIMIT $2`, [product, n])).rows.map(r => r.id);
	// Buyers far above the held ones: none holds a slot of the product.
	const buyers = Array.from({ length: n }, (_, i) => String(USERS - i));
	const seqs = Array.from({ length: n }, (_, i) => String(HELD + 1 + i));
	const pred = pipelined ? (await c.query(`SELECT id, epoch, seq FROM slots WHERE product_id = $1 AND status = 'HELD' ORDER BY seq DESC LIMIT 1`, [product])).rows[0] : null;
	return [product, epoch, 1800, free, buyers, seqs, pred?.id ?? null, pred?.epoch ?? null, pred?.seq ?? null];
}

const statements: [string, () => Promise<[string, unknown[]]>, number][] = [
	["takeover: every live unit of the product", async () => [liveUnitsSql, [product]], 5000],
	["free units of the product (the allocator's re-check, the report)", async () => [freeCountSql, [product]], 2000],
	["outbox: messages of the slots just granted", async () => {
		const ids = (await c.query(`SELECT slot_id FROM outbox ORDER BY id DESC LIMIT 256`)).rows.map(r => r.slot_id);
		return [outboxOfSlotsSql, [ids]];
	}, 1000],
	["outbox: the sweep of messages left pending", async () => [outboxLeftPendingSql, [60]], 2000],
	["expiry sweep: overdue slots", async () => [expireSql(false, false), []], 3000],
	["expiry of one slot", async () => {
		const [{ id }] = (await c.query(`SELECT id FROM slots WHERE product_id = $1 AND status = 'HELD' LIMIT 1`, [product])).rows;
		return [expireSql(true, false), [id]];
	}, 1000],
	["report: every granted row", async () => [grantRowsSql, [product]], 8000],
	["dashboard: today's products and their counts", async () => [saleCountsSql, []], 5000],
];

beforeAll(async () => {
	(await openDatabase(DB)).destroy();
	c = new Client({ connectionString: DB });
	await c.connect();
	// Statistics from when the store held one tiny product, kept that stale.
	for (const t of ["users", "slots", "outbox", "products"]) await c.query(`ALTER TABLE ${t} SET (autovacuum_enabled = false)`);
	await c.query(`INSERT INTO users (login_id, email, password_hash) SELECT 'tiny' || g, 'tiny' || g || '@example.com', 'x' FROM generate_series(1, 10) g`);
	await c.query(`INSERT INTO products (name, price, stock, sale_at) VALUES ('tiny', 1, 10, now() - interval '1 hour')`);
	await c.query(`INSERT INTO slots (product_id, unit) SELECT currval('products_id_seq'), g FROM generate_series(1, 10) g`);
	await c.query(`ANALYZE`);
	// Production sizes.
	await c.query(`INSERT INTO users (login_id, email, password_hash) SELECT 'u' || g, 'u' || g || '@example.com', 'x' FROM generate_series(11, $1) g`, [USERS]);
	const p = await c.query(`INSERT INTO products (name, price, stock, sale_at, epoch) VALUES ('drop', 1000, $1, now() - interval '1 minute', 1) RETURNING id, epoch`, [STOCK]);
	product = String(p.rows[0].id);
	epoch = p.rows[0].epoch;
	await c.query(
		`INSERT INTO slots (product_id, unit, status, user_id, held_at, expires_at, epoch, seq)
		 SELECT $1, g, CASE WHEN g <= $2 THEN 'HELD' ELSE 'AVAILABLE' END, CASE WHEN g <= $2 THEN 100 + g END,
		        CASE WHEN g <= $2 THEN now() END, CASE WHEN g <= $2 THEN now() + interval '30 minutes' - make_interval(secs => g % 2) END,
		        CASE WHEN g <= $2 THEN 1 END, CASE WHEN g <= $2 THEN g END
		 FROM generate_series(1, $3) g`,
		[product, HELD, STOCK]
	);
	await c.query(
		`INSERT INTO slots (product_id, unit, status, user_id, held_at, expires_at, expired_at, epoch, seq)
		 SELECT $1, g, 'EXPIRED', 200000 + g, now() - interval '1 hour', now() - interval '30 minutes', now() - interval '30 minutes', 1, g
		 FROM generate_series(1, $2) g`,
		[product, EXPIRED]
	);
	await c.query(`INSERT INTO outbox (topic, slot_id, created_at) SELECT 'slot.granted', id, now() - interval '2 minutes' FROM slots WHERE product_id = $1 AND status = 'HELD'`, [product]);
}, 300_000);

afterAll(async () => {
	await c?.end();
	await dropDatabase(DB);
});

describe.each(["stale", "fresh"])("with %s statistics", stats => {
	beforeAll(async () => {
		if (stats === "fresh") await c.query("ANALYZE");
	}, 120_000);

	test.each([1, 64, 256])("the batch commit of %i grants reaches every row by index", async n => {
		for (const pipelined of [false, true]) {
			const { scans, ms } = await explain(grantBatchSql, await batch(n, pipelined));
			expect({ n, pipelined, scans }).toEqual({ n, pipelined, scans: [] });
			expect(ms).toBeLessThan(500);
		}
	});

	test.each(statements.map(s => [s[0], s[1], s[2]] as const))("%s: no seq scan of slots or users", async (_name, make, bound) => {
		const [text, params] = await make();
		const { scans, ms } = await explain(text, params);
		expect(scans).toEqual([]);
		expect(ms).toBeLessThan(bound);
	});
});

/**
 * The cliff as it struck (issue 20): a 40,000-unit product in a database whose statistics predate
 * it, so the planner believes the product has one row. Without the settings the batch commit is a
 * nested loop over a seq scan of every slot; with them, index scans. This is what shows that the
 * checks above can fail.
 */
describe("the bench's database, where the cliff was found", () => {
	const SMALL = freshDatabaseUrl("plans_cliff");
	let small: Client;
	beforeAll(async () => {
		(await openDatabase(SMALL)).destroy();
		small = new Client({ connectionString: SMALL });
		await small.connect();
		for (const t of ["users", "slots", "products"]) await small.query(`ALTER TABLE ${t} SET (autovacuum_enabled = false)`);
		await small.query(`INSERT INTO users (login_id, email, password_hash) SELECT 'u' || g, 'u' || g || '@example.com', 'x' FROM generate_series(1, 60000) g`);
		await small.query(`INSERT INTO products (name, price, stock, sale_at) VALUES ('warm-up', 1, 1000, now())`);
		await small.query(`INSERT INTO slots (product_id, unit) SELECT 1, g FROM generate_series(1, 1000) g`);
		await small.query(`ANALYZE`);
		await small.query(`INSERT INTO products (name, price, stock, sale_at, epoch) VALUES ('drop', 1, 40000, now(), 1)`);
		await small.query(`INSERT INTO slots (product_id, unit) SELECT 2, g FROM generate_series(1, 40000) g`);
	}, 120_000);
	afterAll(async () => {
		await small?.end();
		await dropDatabase(SMALL);
	});

	test("without the settings the plan flips at 256 grants; with them it does not", async () => {
		const free = (await small.query(`SELECT id FROM slots WHERE product_id = 2 ORDER BY unit LIMIT 256`)).rows.map(r => r.id);
		const params = ["2", 1, 1800, free, free.map((_, i) => String(1000 + i)), free.map((_, i) => String(i + 1)), null, null, null];
		const plan = async (settings: string) => {
			await small.query(`BEGIN; ${settings}`);
			try {
				const { rows } = await small.query(`EXPLAIN (FORMAT JSON) ${grantBatchSql}`, params);
				return seqScans(rows[0]["QUERY PLAN"][0].Plan);
			} finally {
				await small.query("ROLLBACK");
			}
		};
		expect(await plan("")).toContain("slots");
		expect(await plan(INDEX_PATHS_ONLY)).toEqual([]);
	});
});
