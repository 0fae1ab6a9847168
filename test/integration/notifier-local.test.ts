import { Client } from "pg";
import { publishMessages } from "../../mixins/notify.mixin";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { sleep } from "../helpers/sale";

/**
 * The single-process store (no TRANSPORTER) runs the notifier's intake on a local adapter. A
 * publish there returns only once the message is a row in the delivery log, so a message whose
 * publish returned survives a restart, and one the log could not take is refused to the publisher
 * (whose outbox or log keeps it) instead of being dropped.
 */
const DB = freshDatabaseUrl("notifier_local");
const env = { DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, SERVICES: "notifier", NOTIFIER_POLL_MS: "100", LOCALE: "en" };
let node: StoreNode | undefined;
let locker: Client | undefined;

const rowOf = async (key: string) => (await sql<{ status: string; channel: string }>(DB, "SELECT status, channel FROM deliveries WHERE dedupe_key = $1", [key]))[0];
const mail = (key: string) => ({ kind: "test.mail", channel: "email" as const, recipient: `${key}@example.com`, subject: `Subject ${key}`, text: `Body ${key}`, dedupeKey: key });

afterEach(async () => {
	// The lock never outlives its test.
	await locker?.end().catch(() => undefined);
	locker = undefined;
	await node?.stop();
	node = undefined;
});
afterAll(async () => {
	await dropDatabase(DB);
});

it("returns from a publish only once the delivery log holds the message", async () => {
	node = await startNode(env);
	// Hold the delivery log: the intake cannot write until the lock is let go.
	locker = new Client({ connectionString: DB });
	await locker.connect();
	await locker.query("BEGIN");
	await locker.query("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE");
	let settled = false;
	const published = publishMessages(node.broker, [mail("held-1")]).then(() => (settled = true));
	await sleep(700);
	expect(settled).toBe(false); // the publish waits for the log, it does not fire and forget
	await locker.query("COMMIT");
	await published;
	// Resolved: the row is there, read right away, no waiting.
	expect(await rowOf("held-1")).toMatchObject({ channel: "email" });
});

it("refuses a publish the delivery log could not take, and keeps what it took across a restart", async () => {
	node = await startNode(env);
	// The intake fails (its table is gone for a moment): the publisher hears of it.
	await sql(DB, "ALTER TABLE deliveries RENAME TO deliveries_away");
	try {
		await expect(publishMessages(node.broker, [mail("refused-1")])).rejects.toThrow();
	} finally {
		await sql(DB, "ALTER TABLE deliveries_away RENAME TO deliveries");
	}
	await publishMessages(node.broker, [mail("kept-1")]);
	await node.stop();
	node = await startNode(env);
	// The local mailbox (no SMTP_URL) delivers it after the restart; the refused one was never logged.
	await waitFor("the kept message delivered after the restart", async () => (await rowOf("kept-1"))?.status === "SENT", 15_000);
	expect(await rowOf("refused-1")).toBeUndefined();
});

it("fails an e-mail with no recipient in the local mailbox, as SMTP would, and keeps the rest", async () => {
	node = await startNode(env);
	await publishMessages(node.broker, [{ ...mail("nobody-1"), recipient: "" }, mail("somebody-1")]);
	await waitFor("both settled", async () => (await rowOf("nobody-1"))?.status === "FAILED" && (await rowOf("somebody-1"))?.status === "SENT", 15_000);
	const [row] = await sql<{ last_error: string }>(DB, "SELECT last_error FROM deliveries WHERE dedupe_key = 'nobody-1'");
	expect(row.last_error).toBe("e-mail without a recipient");
});

it("takes at most NOTIFIER_MAX_IN_FLIGHT publishes into the log at once, however many come together", async () => {
	node = await startNode({ ...env, NOTIFIER_MAX_IN_FLIGHT: "3" });
	// Hold the delivery log, so every intake that starts waits on the lock where it can be counted.
	locker = new Client({ connectionString: DB });
	await locker.connect();
	await locker.query("BEGIN");
	await locker.query("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE");
	const published = Promise.all(Array.from({ length: 20 }, (_, i) => publishMessages(node!.broker, [mail(`burst-${i}`)])));
	const waiting = async () =>
		(
			await sql<{ n: number }>(
				DB,
				"SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO deliveries%'"
			)
		)[0].n;
	// The fault struck: intakes are held on the lock.
	await waitFor("intakes held on the lock", async () => (await waiting()) >= 3);
	// And no more than three of them, however long the other seventeen publishes wait.
	await sleep(500);
	expect(await waiting()).toBe(3);
	await locker.query("COMMIT");
	await published;
	const [r] = await sql<{ n: number }>(DB, "SELECT count(*)::int AS n FROM deliveries WHERE dedupe_key LIKE 'burst-%'");
	expect(r.n).toBe(20);
});
