import { Client } from "pg";
import { MessageBody } from "../../contracts";
import { publishMessages } from "../../mixins/notify.mixin";
import { TAKE_DUE_SQL } from "../../store/deliveries";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { TestSmtp } from "../helpers/smtp";

/**
 * A sale's burst of mails: thousands of deliveries land in a log created minutes ago. Measured in
 * the bench, each takeDue then sorted every PENDING row (15 ms at 11,000 rows, for 8 rows taken),
 * because the planner had the statistics of an empty table. The notifier refreshes them as the
 * burst grows, and the due index is walked in the order deliveries are taken.
 */
const DB = freshDatabaseUrl("notifier_burst");
let smtp: TestSmtp;

beforeAll(async () => {
	smtp = await TestSmtp.start();
});
afterAll(async () => {
	await smtp?.stop();
	await dropDatabase(DB);
});

/** Every node type in a JSON plan, depth first. */
function planNodes(plan: { "Node Type": string; "Index Name"?: string; Plans?: unknown[] }): string[] {
	const here = plan["Index Name"] ? `${plan["Node Type"]} on ${plan["Index Name"]}` : plan["Node Type"];
	return [here, ...((plan.Plans ?? []) as (typeof plan)[]).flatMap(planNodes)];
}

describe("the delivery log under a burst", () => {
	it("refreshes its statistics as 12,000 arrive, and takes the next due ones by walking the due index, not sorting the backlog", async () => {
		// Slow sends (30 ms each, 8 at a time): the backlog stays PENDING while the plan is read.
		smtp.delayMs = 30;
		const node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, SERVICES: "notifier", SMTP_URL: smtp.url });
		const db = new Client({ connectionString: DB });
		await db.connect();
		try {
			const analyzed = async () => (await sql<{ n: number }>(DB, "SELECT analyze_count::int AS n FROM pg_stat_user_tables WHERE relname = 'deliveries'"))[0].n;
			expect(await analyzed()).toBe(0);
			const bodies: MessageBody[] = Array.from({ length: 12_000 }, (_, i) => ({
				kind: "test.burst",
				channel: "email",
				recipient: `burst${i + 1}@example.com`,
				subject: `burst ${i + 1}`,
				text: "burst",
				dedupeKey: `burst-${i + 1}`,
			}));
			for (let i = 0; i < bodies.length; i += 500) await publishMessages(node.broker, bodies.slice(i, i + 500));
			// ANALYZE by the notifier (autovacuum's would count in autoanalyze_count): at 1,000, 2,000,
			// 4,000 and 8,000 taken in. Without them, at this size, the plan below is a Sort of every
			// PENDING row over a bitmap scan (seen with the refresh switched off).
			await waitFor("the notifier to refresh the log's statistics", async () => (await analyzed()) >= 4);
			const [{ pending }] = await sql<{ pending: number }>(DB, "SELECT count(*)::int AS pending FROM deliveries WHERE status = 'PENDING'");
			expect(pending).toBeGreaterThan(1000);
			const { rows } = await db.query(`EXPLAIN (FORMAT JSON) ${TAKE_DUE_SQL}`, ["plan-reader", 8, 60_000, 30]);
			const nodes = planNodes(rows[0]["QUERY PLAN"][0].Plan);
			expect(nodes).toContain("Index Scan on deliveries_due");
			expect(nodes.filter(n => n.includes("Sort"))).toEqual([]);
		} finally {
			await db.end();
			smtp.delayMs = 0;
			await node.stop();
		}
	});
});
