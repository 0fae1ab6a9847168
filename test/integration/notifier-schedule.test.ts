import { MessageBody } from "../../contracts";
import { publishMessages } from "../../mixins/notify.mixin";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { deleteStream } from "../helpers/jetstream";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { sleep } from "../helpers/sale";
import { TestSmtp } from "../helpers/smtp";
import { asAdmin } from "../helpers/identity";

/**
 * Scheduled messages: held as Agenda jobs, never sent before `sendAt`, sent soon after it, and
 * cancellable until then. Times are asserted as windows: not before T, by T + slack.
 */
const DB = freshDatabaseUrl("notifier_sched");
const NS = freshNamespace("nsch");
const SLACK = 4000;
let smtp: TestSmtp;
let node: StoreNode;

const at = (ms: number) => new Date(Date.now() + ms).toISOString();
const scheduled = (key: string, sendAt: string): MessageBody => ({
	kind: "test.scheduled",
	channel: "email",
	recipient: `${key}@example.com`,
	subject: `Scheduled ${key}`,
	text: "later",
	sendAt,
	dedupeKey: key,
});
const row = async (key: string) =>
	(await sql<{ id: string; status: string; next_attempt_at: Date | null; sent_at: Date | null }>(DB, "SELECT id, status, next_attempt_at, sent_at FROM deliveries WHERE dedupe_key = $1", [key]))[0];
const jobsOf = (id: string) => sql(DB, "SELECT 1 FROM agenda_jobs WHERE name = 'notification.due' AND data->>'deliveryId' = $1", [id]);

beforeAll(async () => {
	smtp = await TestSmtp.start();
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		TRANSPORTER: NATS_URL,
		NAMESPACE: NS,
		SERVICES: "notifier",
		SMTP_URL: smtp.url,
		AGENDA_PROCESS_EVERY_MS: "200",
		NOTIFIER_POLL_MS: "200",
	});
});
afterAll(async () => {
	await node?.stop();
	await smtp?.stop();
	await deleteStream(NS);
	await dropDatabase(DB);
});

describe("scheduled messages", () => {
	it("does not arrive before sendAt, and does soon after", async () => {
		const sendAt = Date.now() + 3000;
		await publishMessages(node.broker, [scheduled("later-1", new Date(sendAt).toISOString())]);
		await waitFor("the row", async () => !!(await row("later-1")));
		const r = await row("later-1");
		expect(r).toMatchObject({ status: "PENDING", next_attempt_at: null });
		expect(await jobsOf(r.id)).toHaveLength(1);
		while (Date.now() < sendAt - 50) {
			expect(smtp.to("later-1@example.com")).toHaveLength(0);
			await sleep(100);
		}
		await waitFor("the mail", () => smtp.to("later-1@example.com").length === 1, SLACK + 1000);
		expect(smtp.to("later-1@example.com")[0].at).toBeGreaterThanOrEqual(sendAt);
		expect(smtp.to("later-1@example.com")[0].at).toBeLessThan(sendAt + SLACK);
		expect((await row("later-1")).status).toBe("SENT");
	});

	it("a message cancelled by its key before sendAt never arrives", async () => {
		const sendAt = Date.now() + 2000;
		await publishMessages(node.broker, [scheduled("cancel-1", new Date(sendAt).toISOString())]);
		await waitFor("the row", async () => !!(await row("cancel-1")));
		const res = await node.broker.call("notifier.cancel", { dedupeKey: "cancel-1" }, asAdmin(node.broker));
		expect(res).toEqual({ cancelled: 1, ids: [(await row("cancel-1")).id] });
		expect(await jobsOf((await row("cancel-1")).id)).toHaveLength(0);
		await sleep(sendAt - Date.now() + SLACK);
		expect(smtp.to("cancel-1@example.com")).toHaveLength(0);
		expect((await row("cancel-1")).status).toBe("CANCELLED");
	});

	it("a cancel that overtakes its message (and one by delivery id) stops it too", async () => {
		await node.broker.call("notifier.cancel", { dedupeKey: "cancel-2" }, asAdmin(node.broker));
		const sendAt = Date.now() + 1500;
		await publishMessages(node.broker, [scheduled("cancel-2", new Date(sendAt).toISOString()), scheduled("cancel-3", new Date(sendAt).toISOString())]);
		await waitFor("the row", async () => !!(await row("cancel-3")));
		expect(await node.broker.call("notifier.cancel", { id: (await row("cancel-3")).id }, asAdmin(node.broker))).toMatchObject({ cancelled: 1 });
		await sleep(sendAt - Date.now() + SLACK);
		expect(smtp.to("cancel-2@example.com")).toHaveLength(0);
		expect(smtp.to("cancel-3@example.com")).toHaveLength(0);
		expect(await sql(DB, "SELECT 1 FROM deliveries WHERE dedupe_key = 'cancel-2' AND status = 'PENDING'")).toHaveLength(0);
		// A message with sendAt in the past goes at once.
		await publishMessages(node.broker, [scheduled("past-1", at(-60_000))]);
		await waitFor("the past one", () => smtp.to("past-1@example.com").length === 1, SLACK);
	});
});
