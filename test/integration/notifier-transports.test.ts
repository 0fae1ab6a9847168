import { MessageBody } from "../../contracts";
import { publishMessages } from "../../mixins/notify.mixin";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { deleteStream } from "../helpers/jetstream";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { sleep } from "../helpers/sale";
import { TestSmtp } from "../helpers/smtp";
import { TestWebhooks } from "../helpers/webhooks";

/**
 * The notifier's channels against real servers: JetStream for the intake, an SMTP server and an
 * HTTP server (standing in for Slack's and Discord's webhooks) in this process.
 */
const DB = freshDatabaseUrl("notifier_tx");
const NS = freshNamespace("ntx");
let smtp: TestSmtp;
let hooks: TestWebhooks;
let node: StoreNode;

interface Row {
	id: string;
	status: string;
	attempts: number;
	last_error: string | null;
	channel: string;
	kind: string;
}
const rowsOf = (key: string) => sql<Row>(DB, "SELECT id, status, attempts, last_error, channel, kind FROM deliveries WHERE dedupe_key = $1 ORDER BY channel", [key]);
const publish = (...bodies: MessageBody[]) => publishMessages(node.broker, bodies);
const mail = (key: string, to: string, extra: Partial<MessageBody> = {}): MessageBody => ({
	kind: "test.mail",
	channel: "email",
	recipient: to,
	subject: `Subject ${key} 한글`,
	text: `Body of ${key}\n두 번째 줄`,
	dedupeKey: key,
	...extra,
});

beforeAll(async () => {
	smtp = await TestSmtp.start();
	hooks = await TestWebhooks.start();
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		TRANSPORTER: NATS_URL,
		NAMESPACE: NS,
		SERVICES: "notifier",
		SMTP_URL: smtp.url,
		MAIL_FROM: "Store <store@example.com>",
		SLACK_WEBHOOK_URL: hooks.url("/slack"),
		DISCORD_WEBHOOK_URL: hooks.url("/discord"),
		NOTIFIER_MAX_ATTEMPTS: "4",
		NOTIFIER_BACKOFF_BASE_MS: "300",
		NOTIFIER_BACKOFF_MAX_MS: "1000",
		NOTIFIER_POLL_MS: "100",
		LOCALE: "en",
	});
});
afterEach(async () => {
	// A fault never outlives its test.
	await smtp.up().catch(() => undefined);
});
afterAll(async () => {
	await node?.stop();
	await smtp?.stop();
	await hooks?.stop();
	await deleteStream(NS);
	await dropDatabase(DB);
});

describe("e-mail over SMTP", () => {
	it("delivers a message once, with its recipient, sender, subject and text, however often it is published", async () => {
		await publish(mail("once-1", "once1@example.com"));
		await publish(mail("once-1", "once1@example.com"));
		await waitFor("the mail", () => smtp.to("once1@example.com").length > 0);
		await sleep(1000);
		const got = smtp.to("once1@example.com");
		expect(got).toHaveLength(1);
		expect(got[0]).toMatchObject({ subject: "Subject once-1 한글", text: "Body of once-1\n두 번째 줄", from: "Store <store@example.com>", kind: "test.mail" });
		const [row] = await rowsOf("once-1");
		expect(row).toMatchObject({ status: "SENT", attempts: 1, last_error: null });
		// In MAIL_FROM's domain.
		expect(got[0].messageId).toBe(`<delivery-${row.id}@example.com>`);
	});

	it("SMTP down: retries with backoff, then FAILED with the error, and the operators hear of it", async () => {
		await smtp.down();
		await publish(mail("down-1", "down1@example.com"));
		await waitFor("FAILED", async () => (await rowsOf("down-1"))[0]?.status === "FAILED", 30_000);
		const [row] = await rowsOf("down-1");
		expect(row.attempts).toBe(4);
		expect(row.last_error).toMatch(/ECONNREFUSED/);
		await waitFor("the operators' alert", () => hooks.on("/slack").some(h => /finally failed/.test(h.body.text) && h.body.text.includes(`#${row.id}`)), 10_000);
		expect(hooks.on("/discord").some(h => h.body.content.includes("finally failed"))).toBe(true);
		await smtp.up();
		await sleep(1000);
		expect(smtp.to("down1@example.com")).toHaveLength(0);
	});

	it("SMTP back within the retry window: SENT, once", async () => {
		await smtp.down();
		await publish(mail("back-1", "back1@example.com"));
		// The fault struck: a try failed against the closed port.
		await waitFor("a failed try", async () => ((await rowsOf("back-1"))[0]?.attempts ?? 0) >= 1 && (await rowsOf("back-1"))[0].last_error !== null, 10_000);
		await smtp.up();
		await waitFor("the mail", () => smtp.to("back1@example.com").length > 0, 15_000);
		const [row] = await rowsOf("back-1");
		expect(row.status).toBe("SENT");
		expect(row.attempts).toBeGreaterThanOrEqual(2);
		expect(row.last_error).toBeNull();
		await sleep(500);
		expect(smtp.to("back1@example.com")).toHaveLength(1);
	});

	it("an e-mail with no recipient, or on an unknown channel, is FAILED at once with the reason", async () => {
		await publish(mail("norcpt-1", ""), { ...mail("pigeon-1", "x@example.com"), channel: "pigeon" as never });
		await waitFor("both FAILED", async () => (await rowsOf("norcpt-1"))[0]?.status === "FAILED" && (await rowsOf("pigeon-1"))[0]?.status === "FAILED");
		expect((await rowsOf("norcpt-1"))[0]).toMatchObject({ attempts: 1, last_error: "e-mail without a recipient" });
		expect((await rowsOf("pigeon-1"))[0]).toMatchObject({ attempts: 1, last_error: 'unknown channel "pigeon"' });
	});
});

describe("Slack and Discord", () => {
	it("post their documented JSON: Slack text and blocks, Discord content and embeds; 'operators' goes to both", async () => {
		const base = { kind: "test.chat", recipient: "", subject: "Sale opened", text: "Test drop is on sale: 10 units." };
		await publish({ ...base, channel: "slack", dedupeKey: "chat-s" }, { ...base, channel: "discord", dedupeKey: "chat-d" }, { ...base, channel: "operators", dedupeKey: "chat-o" });
		await waitFor("four posts", () => hooks.hooks.filter(h => h.body?.text?.includes("Test drop is on sale") || h.body?.embeds?.[0]?.description?.includes("Test drop is on sale")).length === 4);
		const slack = hooks.on("/slack").filter(h => h.body.text.includes("Test drop is on sale"));
		const discord = hooks.on("/discord").filter(h => h.body.embeds?.[0]?.description?.includes("Test drop is on sale"));
		expect(slack).toHaveLength(2);
		expect(discord).toHaveLength(2);
		expect(slack[0].body).toEqual({
			text: "Sale opened\nTest drop is on sale: 10 units.",
			blocks: [
				{ type: "header", text: { type: "plain_text", text: "Sale opened", emoji: true } },
				{ type: "section", text: { type: "mrkdwn", text: "Test drop is on sale: 10 units." } },
			],
		});
		expect(discord[0].body).toEqual({
			content: "Sale opened",
			embeds: [{ title: "Sale opened", description: "Test drop is on sale: 10 units." }],
			allowed_mentions: { parse: [] },
		});
		expect((await rowsOf("chat-o")).map(r => [r.channel, r.status])).toEqual([["discord", "SENT"], ["slack", "SENT"]]);
	});

	it("a webhook answering 429 with Retry-After is tried again after it, not before", async () => {
		hooks.answerNext("/discord", { status: 429, headers: { "retry-after": "2", "content-type": "application/json" }, body: '{"retry_after": 2}' });
		await publish({ kind: "test.chat", channel: "discord", recipient: "", subject: "Sold out", text: "limited 429", dedupeKey: "chat-429" });
		await waitFor("the second post", () => hooks.on("/discord").filter(h => h.body.embeds?.[0]?.description === "limited 429").length === 2, 15_000);
		const [first, second] = hooks.on("/discord").filter(h => h.body.embeds?.[0]?.description === "limited 429");
		expect(first.status).toBe(429);
		expect(second.status).toBe(204);
		expect(second.at - first.at).toBeGreaterThanOrEqual(1900);
		expect(second.at - first.at).toBeLessThan(8000);
		expect((await rowsOf("chat-429"))[0]).toMatchObject({ status: "SENT", attempts: 2 });
	});

	it("a webhook answering 400 is FAILED at once with the status", async () => {
		hooks.answerNext("/slack", { status: 400, body: "invalid_payload" });
		await publish({ kind: "test.chat", channel: "slack", recipient: "", subject: "Bad", text: "bad payload", dedupeKey: "chat-400" });
		await waitFor("FAILED", async () => (await rowsOf("chat-400"))[0]?.status === "FAILED");
		expect((await rowsOf("chat-400"))[0]).toMatchObject({ attempts: 1, last_error: "Slack webhook: HTTP 400 invalid_payload" });
	});
});

describe("a node with no Slack or Discord configured", () => {
	// A second store of its own (database, stream) whose notifier has SMTP only: what it cannot send
	// is FAILED in the log with the setting to fix, never a crash, and the node keeps delivering.
	const BARE_DB = freshDatabaseUrl("notifier_bare");
	const BARE_NS = freshNamespace("nbare");
	let bare: StoreNode;
	const bareRows = (key: string) => sql<Row>(BARE_DB, "SELECT id, status, attempts, last_error, channel, kind FROM deliveries WHERE dedupe_key = $1 ORDER BY channel", [key]);
	beforeAll(async () => {
		bare = await startNode({
			DATABASE_URL: BARE_DB,
			JWT_SECRET: TEST_SECRET,
			TRANSPORTER: NATS_URL,
			NAMESPACE: BARE_NS,
			SERVICES: "notifier",
			SMTP_URL: smtp.url,
			MAIL_FROM: "Store <store@example.com>",
			NOTIFIER_POLL_MS: "100",
			LOCALE: "en",
		});
	});
	afterAll(async () => {
		await bare?.stop();
		await deleteStream(BARE_NS);
		await dropDatabase(BARE_DB);
	});

	it("logs a Slack, a Discord and an operators' message as FAILED with the missing setting, and still sends e-mail", async () => {
		const chat = { kind: "test.chat", recipient: "", subject: "Sold out", text: "nowhere to post" };
		await publishMessages(bare.broker, [
			{ ...chat, channel: "slack", dedupeKey: "bare-s" },
			{ ...chat, channel: "discord", dedupeKey: "bare-d" },
			{ ...chat, channel: "operators", dedupeKey: "bare-o" },
			mail("bare-mail", "bare@example.com"),
		]);
		await waitFor("all four settled", async () => {
			const rows = await Promise.all(["bare-s", "bare-d", "bare-o", "bare-mail"].map(k => bareRows(k)));
			return rows.every(r => r.length === 1 && r[0].status !== "PENDING");
		}, 15_000);
		expect((await bareRows("bare-s"))[0]).toMatchObject({ status: "FAILED", attempts: 1, last_error: "no slack configuration on this node (SLACK_WEBHOOK_URL)" });
		expect((await bareRows("bare-d"))[0]).toMatchObject({ status: "FAILED", attempts: 1, last_error: "no discord configuration on this node (DISCORD_WEBHOOK_URL)" });
		expect((await bareRows("bare-o"))[0]).toMatchObject({ status: "FAILED", last_error: "no operators' channel configured (SLACK_WEBHOOK_URL, DISCORD_WEBHOOK_URL)" });
		expect((await bareRows("bare-mail"))[0]).toMatchObject({ status: "SENT", attempts: 1 });
		expect(smtp.to("bare@example.com")).toHaveLength(1);
		// Nothing reached the webhooks the other node is configured with.
		expect(hooks.hooks.filter(h => JSON.stringify(h.body ?? "").includes("nowhere to post"))).toHaveLength(0);
	});
});

describe("retention", () => {
	it("prunes finished deliveries older than NOTIFIER_RETENTION_DAYS, never a PENDING one", async () => {
		await sql(
			DB,
			`INSERT INTO deliveries (dedupe_key, kind, channel, status, updated_at, next_attempt_at) VALUES
			   ('old-sent', 'test.old', 'email', 'SENT', now() - interval '31 days', NULL),
			   ('old-failed', 'test.old', 'email', 'FAILED', now() - interval '31 days', NULL),
			   ('young-sent', 'test.old', 'email', 'SENT', now() - interval '29 days', NULL),
			   ('old-pending', 'test.old', 'email', 'PENDING', now() - interval '31 days', now() + interval '1 day')`
		);
		expect(await node.broker.call("notifier.prune")).toEqual({ pruned: 2 });
		const left = await sql<{ dedupe_key: string }>(DB, "SELECT dedupe_key FROM deliveries WHERE kind = 'test.old' ORDER BY dedupe_key");
		expect(left.map(r => r.dedupe_key)).toEqual(["old-pending", "young-sent"]);
	});
});
