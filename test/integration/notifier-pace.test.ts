import { MessageBody } from "../../contracts";
import { publishMessages } from "../../mixins/notify.mixin";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { asAdmin } from "../helpers/identity";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { TestSmtp } from "../helpers/smtp";

/**
 * E-mail at a provider's pace, against a local SMTP server that behaves like Gmail: it throttles
 * (421 4.7.0), then answers its daily quota (550 5.4.5) for a while, and rejects an unknown
 * mailbox (550 5.1.1). Nothing is lost, nothing is sent twice, and the token bucket's rate holds.
 */
jest.setTimeout(120_000);

const PER_MINUTE = 300; // 5 a second
const BURST = 3;
const DB = freshDatabaseUrl("notifier_pace");
let smtp: TestSmtp;
let node: StoreNode;

beforeAll(async () => {
	smtp = await TestSmtp.start();
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		SERVICES: "notifier",
		SMTP_URL: smtp.url,
		MAIL_FROM: "Store <no-reply@shop.example.kr>",
		NOTIFIER_EMAIL_PER_MINUTE: String(PER_MINUTE),
		NOTIFIER_EMAIL_BURST: String(BURST),
		// Two tries only: a provider's "later" answers must not use them up.
		NOTIFIER_MAX_ATTEMPTS: "2",
		NOTIFIER_BACKOFF_BASE_MS: "300",
		NOTIFIER_BACKOFF_MAX_MS: "1500",
		NOTIFIER_POLL_MS: "200",
	});
});
afterAll(async () => {
	await node?.stop();
	await smtp?.stop();
	await dropDatabase(DB);
});

const mail = (i: number, kind = "test.pace"): MessageBody => ({
	kind,
	channel: "email",
	recipient: `pace${i}@example.com`,
	subject: `Pace ${i}`,
	text: "at the provider's pace",
	dedupeKey: `${kind}-${i}`,
});

describe("e-mail at a provider's pace", () => {
	it("throttled, then over quota: every message arrives once, the rate holds, a rejected mailbox fails at once", async () => {
		const N = 30;
		let accepted = 0;
		let quotaUntil = 0;
		let throttled = 0;
		let busy = 0;
		smtp.judge = to => {
			if (to.includes("nobody@example.com")) return { code: 550, message: "5.1.1 The email account that you tried to reach does not exist." };
			if (throttled < 2) return (throttled++, { code: 421, message: "4.7.0 Try again later, closing connection." });
			// One mailbox's server is busy three times running: more "later"s than NOTIFIER_MAX_ATTEMPTS.
			if (to.includes("pace5@example.com") && busy < 3) return (busy++, { code: 451, message: "4.3.0 Mail server temporarily rejected message." });
			if (accepted === 10 && quotaUntil === 0) quotaUntil = Date.now() + 4_000;
			if (Date.now() < quotaUntil) return { code: 550, message: "5.4.5 Daily user sending quota exceeded." };
			accepted++;
			return null;
		};
		await publishMessages(node.broker, [...Array.from({ length: N }, (_, i) => mail(i)), { ...mail(0, "test.nobody"), recipient: "nobody@example.com" }]);
		await waitFor("every message sent", () => smtp.to().length >= N, 90_000);
		await new Promise(r => setTimeout(r, 1_000));

		// The faults struck.
		const codes = smtp.refusals.map(r => `${r.code} ${r.message.slice(0, 5)}`);
		expect(codes.filter(c => c === "421 4.7.0")).toHaveLength(2);
		expect(codes.filter(c => c === "550 5.4.5").length).toBeGreaterThanOrEqual(1);
		// Nothing lost, nothing twice.
		const got = smtp.to();
		expect(got).toHaveLength(N);
		expect(new Set(got.map(m => m.to[0])).size).toBe(N);
		expect(new Set(got.map(m => m.messageId)).size).toBe(N);
		expect(got.every(m => /^<delivery-\d+@shop\.example\.kr>$/.test(m.messageId))).toBe(true);
		const rows = await sql<{ kind: string; status: string; attempts: number; last_error: string | null }>(DB, "SELECT kind, status, attempts, last_error FROM deliveries WHERE kind LIKE 'test.%'");
		expect(rows.filter(r => r.kind === "test.pace").every(r => r.status === "SENT")).toBe(true);
		// Refused more often than NOTIFIER_MAX_ATTEMPTS, and still went.
		expect(codes.filter(c => c === "451 4.3.0")).toHaveLength(3);
		expect(Math.max(...rows.filter(r => r.kind === "test.pace").map(r => r.attempts))).toBeGreaterThanOrEqual(4);
		// An unknown mailbox is the provider's final word: FAILED after one try.
		expect(rows.find(r => r.kind === "test.nobody")).toMatchObject({ status: "FAILED", attempts: 1 });

		// The rate: no window of a second holds more than the burst and a second's tokens, and the
		// whole run is no faster than the rate (its first burst aside).
		const times = got.map(m => m.at).sort((a, b) => a - b);
		for (let i = 0; i < times.length; i++) {
			const inWindow = times.filter(t => t >= times[i] && t < times[i] + 1_000).length;
			expect(inWindow).toBeLessThanOrEqual(BURST + PER_MINUTE / 60);
		}
		const span = times[times.length - 1] - times[0];
		expect(span).toBeGreaterThanOrEqual(((N - BURST) / (PER_MINUTE / 60)) * 1000 * 0.9);
	});

	it("resends FAILED deliveries in bulk, by kind and time, at the same pace", async () => {
		smtp.judge = to => (to.some(t => t.startsWith("bulk")) ? { code: 554, message: "5.7.1 Message rejected." } : null);
		const before = new Date(Date.now() - 1000);
		await publishMessages(node.broker, [...Array.from({ length: 4 }, (_, i) => ({ ...mail(i, "bulk.a"), recipient: `bulka${i}@example.com` })), ...Array.from({ length: 3 }, (_, i) => ({ ...mail(i, "bulk.b"), recipient: `bulkb${i}@example.com` }))]);
		const failed = (kind: string) => sql(DB, "SELECT id FROM deliveries WHERE kind = $1 AND status = 'FAILED'", [kind]);
		await waitFor("all seven FAILED", async () => (await failed("bulk.a")).length === 4 && (await failed("bulk.b")).length === 3, 30_000);
		smtp.judge = null;

		// Nothing created after `until`: none resent.
		expect(await node.broker.call("notifier.resendFailed", { kind: "bulk.a", until: before.toISOString() }, asAdmin(node.broker))).toEqual({ resent: 0, ids: [] });
		const r: any = await node.broker.call("notifier.resendFailed", { kind: "bulk.a", since: before.toISOString() }, asAdmin(node.broker));
		expect(r.resent).toBe(4);
		await waitFor("bulk.a sent", () => smtp.to().filter(m => m.kind === "bulk.a").length === 4, 30_000);
		await new Promise(r => setTimeout(r, 500));
		expect(smtp.to().filter(m => m.kind === "bulk.b")).toHaveLength(0);
		expect(await failed("bulk.b")).toHaveLength(3);
		// Bad input is a clear 4xx.
		await expect(node.broker.call("notifier.resendFailed", { since: "not a date" }, asAdmin(node.broker))).rejects.toMatchObject({ code: 422 });
	});
});
