import { buyerMessages, formatTime, operatorMessages } from "../../lib/messages";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { api } from "../helpers/http";
import { deleteStream } from "../helpers/jetstream";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { createSale, sleep } from "../helpers/sale";
import { Mail, TestSmtp } from "../helpers/smtp";
import { TestWebhooks } from "../helpers/webhooks";
import { asAdmin } from "../helpers/identity";

/**
 * Every message the store sends, end to end: the domain acts (through the HTTP API), the message
 * crosses JetStream, the notifier sends it, and it arrives at a real SMTP server (or a webhook)
 * with the right recipient, subject and content, in Korean (LOCALE's default). Also the admin
 * view of the delivery log, its resend, the metrics, and the local mailbox of a store with no SMTP.
 */
const DB = freshDatabaseUrl("notifier");
const NS = freshNamespace("nmsg");
const PUBLIC_URL = "https://store.example";
let smtp: TestSmtp;
let hooks: TestWebhooks;
let node: StoreNode;
let http: ReturnType<typeof api>;
let adminToken: string;

beforeAll(async () => {
	smtp = await TestSmtp.start();
	hooks = await TestWebhooks.start();
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		TRANSPORTER: NATS_URL,
		NAMESPACE: NS,
		SMTP_URL: smtp.url,
		SLACK_WEBHOOK_URL: hooks.url("/slack"),
		PUBLIC_URL,
		ADMIN_LOGIN_ID: "boss",
		ADMIN_PASSWORD: "boss-password-1",
		ADMIN_EMAIL: "boss@example.com",
		// The reminder is due 3 s after the grant; expiry is an operator's order, not a clock.
		SLOT_TTL_SECONDS: "60",
		SLOT_REMINDER_BEFORE_SECONDS: "57",
		AGENDA_PROCESS_EVERY_MS: "200",
		PAYMENT_LATENCY_MS: "0",
		NOTIFIER_POLL_MS: "200",
	});
	http = api(node.url);
	const login = await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" });
	if (login.status !== 200) throw new Error(`admin login answered ${login.status}: ${login.text}`);
	adminToken = login.body.accessToken;
});
afterAll(async () => {
	await node?.stop();
	await smtp?.stop();
	await hooks?.stop();
	await deleteStream(NS);
	await dropDatabase(DB);
});

/** A buyer signed up through the API (so the sign-up mail goes out), with a token. */
async function buyer(loginId: string): Promise<{ id: string; token: string; email: string }> {
	const email = `${loginId}@example.com`;
	const s = await http.post("/api/auth/signup", { loginId, password: "password-123", email });
	if (s.status !== 201) throw new Error(`signup answered ${s.status}: ${s.text}`);
	const l = await http.post("/api/auth/login", { loginId, password: "password-123" });
	if (l.status !== 200) throw new Error(`login answered ${l.status}: ${l.text}`);
	return { id: s.body.user.id, token: l.body.accessToken, email };
}

async function mailOf(email: string, kind: string, timeoutMs = 15_000): Promise<Mail> {
	await waitFor(`${kind} to ${email}`, () => smtp.to(email).some(m => m.kind === kind), timeoutMs);
	return smtp.to(email).find(m => m.kind === kind)!;
}

async function granted(b: { token: string }, productId: string) {
	const r = await http.post(`/api/products/${productId}/slots`, undefined, b.token);
	if (r.status !== 201) throw new Error(`claim answered ${r.status}: ${r.text}`);
	return r.body.slot as { id: string; expiresAt: string };
}

let keys = 0;
async function payment(b: { token: string }, slotId: string, body: Record<string, unknown>) {
	const p = await http.post(`/api/slots/${slotId}/payments`, body, b.token, { "idempotency-key": `k-${++keys}` });
	if (p.status !== 201) throw new Error(`payment answered ${p.status}: ${p.text}`);
	return { id: p.body.payment.id as string, confirm: () => http.post(`/api/payments/${p.body.payment.id}/confirm`, undefined, b.token) };
}

describe("buyers' messages by e-mail", () => {
	it("sign-up: a welcome, to the address given", async () => {
		await buyer("hana");
		const m = await mailOf("hana@example.com", "user.signedUp");
		expect(m.to).toEqual(["hana@example.com"]);
		expect(m.subject).toBe("도파민 스토어 가입을 환영합니다");
		expect(m.text).toContain("hana님, 가입이 완료되었습니다.");
		expect(m.text).toContain(`${PUBLIC_URL}/`);
	});

	it("password reset: the link in the e-mail resets the password through the API", async () => {
		await buyer("dana");
		expect((await http.post("/api/auth/password/forgot", { email: "DANA@example.com" })).status).toBe(202);
		const m = await mailOf("dana@example.com", "password.reset");
		expect(m.subject).toBe("도파민 스토어 비밀번호 재설정");
		const link = /(https:\/\/store\.example\/reset\?token=[A-Za-z0-9_-]+)/.exec(m.text)?.[1];
		expect(link).toBeDefined();
		expect(m.text).toContain("30분 안에");
		const token = new URL(link!).searchParams.get("token")!;
		expect((await http.post("/api/auth/password/reset", { token, password: "brand-new-pass-1" })).status).toBe(204);
		expect((await http.post("/api/auth/login", { loginId: "dana", password: "password-123" })).status).toBe(401);
		expect((await http.post("/api/auth/login", { loginId: "dana", password: "brand-new-pass-1" })).status).toBe(200);
	});

	it("slot granted, reminder, receipt, payment failed, slot expired; the operators hear of the reclaimed unit", async () => {
		const product = await createSale(DB, 3);
		const [payer, decliner, sleeper] = [await buyer("payer"), await buyer("decliner"), await buyer("sleeper")];
		const slots = [await granted(payer, product), await granted(decliner, product), await granted(sleeper, product)];

		const g = await mailOf("payer@example.com", "slot.granted");
		expect(g.subject).toBe("[Test drop] 구매 자격을 얻으셨습니다");
		expect(g.text).toContain(`${formatTime("ko", slots[0].expiresAt)}까지`);
		expect(g.text).toContain(`결제하기: ${PUBLIC_URL}/p/${product}`);
		// Exactly as the one place that writes it says.
		const expected = buyerMessages.slotGranted("ko", { loginId: "payer", productName: "Test drop", expiresAt: slots[0].expiresAt, payUrl: `${PUBLIC_URL}/p/${product}` });
		expect(g.subject).toBe(expected.subject);

		const ok = await payment(payer, slots[0].id, { method: "card", cardNumber: "4242424242424242" });
		expect((await ok.confirm()).status).toBe(200);
		const receipt = await mailOf("payer@example.com", "payment.receipt");
		expect(receipt.subject).toBe("[Test drop] 결제 영수증");
		expect(receipt.text).toContain("금액: 1,000원");
		expect(receipt.text).toContain("결제 수단: 카드");
		expect(receipt.text).toContain(`결제 번호: ${ok.id}`);

		const no = await payment(decliner, slots[1].id, { method: "card", cardNumber: "4000000000000002" });
		expect((await no.confirm()).status).toBe(402);
		const failed = await mailOf("decliner@example.com", "payment.failed");
		expect(failed.subject).toBe("[Test drop] 결제에 실패했습니다");
		expect(failed.text).toContain("결제가 거절되었습니다");
		expect(failed.text).toContain(`${PUBLIC_URL}/p/${product}`);

		// The reminder (due 3 s after the grant) reaches the buyer who has not paid.
		const reminder = await mailOf("sleeper@example.com", "slot.reminder", 20_000);
		expect(reminder.subject).toMatch(/^\[Test drop\] 결제 시간이 \d+분 남았습니다$/);
		expect(reminder.text).toContain(`${PUBLIC_URL}/p/${product}`);
		expect(smtp.to("payer@example.com").filter(m => m.kind === "slot.reminder")).toHaveLength(0);

		expect(await node.broker.call("slots.expire", { slotId: slots[2].id }, asAdmin(node.broker))).toEqual({ expired: true });
		const expired = await mailOf("sleeper@example.com", "slot.expired");
		expect(expired.subject).toBe("[Test drop] 구매 자격이 만료되었습니다");
		expect(expired.text).toContain(`${PUBLIC_URL}/p/${product}`);
		// Other operators' messages (the sale opened) go to the same webhook: pick the reclaim's by its words.
		const opsExpected = operatorMessages.unitsReclaimed("ko", { count: 1, products: [{ id: product, name: "Test drop", count: 1 }] });
		await waitFor("the operators' message", () => hooks.on("/slack").some(h => h.body.text.startsWith(opsExpected.subject)));
		const ops = hooks.on("/slack").find(h => h.body.text.startsWith(opsExpected.subject))!;
		expect(ops.body.text).toBe(`${opsExpected.subject}\n${opsExpected.text}`);

		// Each went once.
		await sleep(500);
		for (const who of ["payer", "decliner", "sleeper"]) {
			const kinds = smtp.to(`${who}@example.com`).map(m => m.kind);
			expect(new Set(kinds).size).toBe(kinds.length);
		}
	});
});

describe("the delivery log for admins", () => {
	it("lists deliveries newest first, filtered and paged, in the contract's shape", async () => {
		const r = await http.get("/api/admin/notifications?channel=email&status=SENT", adminToken);
		expect(r.status).toBe(200);
		expect(r.body.notifications.length).toBeGreaterThan(3);
		for (const n of r.body.notifications) expect(n).toMatchObject({ channel: "email", status: "SENT" });
		const first = r.body.notifications[0];
		expect(Object.keys(first).sort()).toEqual(
			["id", "kind", "channel", "recipient", "subject", "text", "status", "attempts", "nextAttemptAt", "lastError", "sendAt", "createdAt", "sentAt"].sort()
		);
		expect(first).toMatchObject({ attempts: 1, nextAttemptAt: null, lastError: null, sentAt: expect.any(String), createdAt: expect.any(String) });
		const ids = r.body.notifications.map((n: { id: string }) => Number(n.id));
		expect(ids).toEqual([...ids].sort((a, b) => b - a));
		expect(r.body).toMatchObject({ page: 1, pageSize: 50, total: r.body.notifications.length });
		const page2 = await http.get("/api/admin/notifications?channel=email&page=2", adminToken);
		expect(page2.status).toBe(200);
		expect(page2.body.notifications).toEqual([]);
		const slack = await http.get("/api/admin/notifications?channel=slack", adminToken);
		expect(slack.body.notifications.map((n: { kind: string }) => n.kind)).toContain("ops.unitsReclaimed");
	});

	it("re-sends one on request (202), and refuses non-admins (403), unknown ids (404) and bad filters (422)", async () => {
		const list = await http.get("/api/admin/notifications?channel=email", adminToken);
		const welcome = list.body.notifications.find((n: { kind: string; recipient: string }) => n.kind === "user.signedUp" && n.recipient === "hana@example.com");
		const before = smtp.to("hana@example.com").length;
		const r = await http.post(`/api/admin/notifications/${welcome.id}/resend`, undefined, adminToken);
		expect(r.status).toBe(202);
		expect(r.body.notification).toMatchObject({ id: welcome.id, status: "PENDING", attempts: 0 });
		await waitFor("the resent mail", () => smtp.to("hana@example.com").length === before + 1);
		await waitFor("SENT again", async () => (await http.get("/api/admin/notifications?channel=email&status=SENT", adminToken)).body.notifications.some((n: { id: string }) => n.id === welcome.id));

		const someone = await buyer("nosy");
		expect((await http.get("/api/admin/notifications", someone.token)).status).toBe(403);
		expect((await http.post(`/api/admin/notifications/${welcome.id}/resend`, undefined, someone.token)).status).toBe(403);
		expect((await http.get("/api/admin/notifications")).status).toBe(401);
		const missing = await http.post("/api/admin/notifications/999999/resend", undefined, adminToken);
		expect([missing.status, missing.body.type]).toEqual([404, "NOTIFICATION_NOT_FOUND"]);
		expect((await http.post("/api/admin/notifications/abc/resend", undefined, adminToken)).status).toBe(404);
		const bad = await http.get("/api/admin/notifications?status=LOST", adminToken);
		expect(bad.status).toBe(422);
		expect(bad.body).toMatchObject({ name: expect.any(String), message: expect.any(String), code: 422, type: "VALIDATION_ERROR" });
	});

	it("metrics: deliveries by channel and status, delivery latency, and the consumer's lag read from JetStream", async () => {
		// One scrape in which the channel and the log are drained (nothing pending, nothing unacked, nothing due).
		let text = "";
		const drained = [/dopamine_notifier_consumer_pending(\{[^}]*\})? 0\b/, /dopamine_notifier_consumer_ack_pending(\{[^}]*\})? 0\b/, /dopamine_notifier_backlog\{[^}]*state="due"[^}]*\} 0\b/];
		await waitFor("the consumer and the log to drain", async () => {
			text = (await http.get("/metrics")).text;
			return drained.every(re => re.test(text));
		}, 20_000);
		expect(text).toMatch(/dopamine_notifier_deliveries_total\{[^}]*channel="email"[^}]*status="SENT"[^}]*\} \d+/);
		expect(text).toMatch(/dopamine_notifier_deliveries_total\{[^}]*channel="slack"[^}]*status="SENT"[^}]*\} \d+/);
		expect(text).toMatch(/dopamine_notifier_delivery_seconds_bucket\{[^}]*channel="email",le="\+Inf"\} [1-9]\d*/);
		expect(text).toMatch(/dopamine_notifier_consumer_ack_pending(\{[^}]*\})? 0/);
		expect(text).toMatch(/dopamine_notifier_backlog\{[^}]*state="due"[^}]*\} 0/);
	});
});

describe("the local mailbox (no SMTP_URL, one process, no NATS)", () => {
	const LOCAL_DB = freshDatabaseUrl("notifier_box");
	afterAll(() => dropDatabase(LOCAL_DB));

	it("keeps the e-mail, full text, where an admin reads the reset link, and the link works", async () => {
		const local = await startNode({
			DATABASE_URL: LOCAL_DB,
			JWT_SECRET: TEST_SECRET,
			ADMIN_LOGIN_ID: "keeper",
			ADMIN_PASSWORD: "keeper-password-1",
			ADMIN_EMAIL: "keeper@example.com",
			LOCALE: "en",
		});
		try {
			const h = api(local.url);
			expect((await h.post("/api/auth/signup", { loginId: "mina", password: "password-123", email: "mina@example.com" })).status).toBe(201);
			expect((await h.post("/api/auth/password/forgot", { email: "mina@example.com" })).status).toBe(202);
			const admin = (await h.post("/api/auth/login", { loginId: "keeper", password: "keeper-password-1" })).body.accessToken;
			let reset: { text: string; status: string; recipient: string; subject: string } | undefined;
			await waitFor("the reset mail in the mailbox", async () => {
				const r = await h.get("/api/admin/notifications?channel=email", admin);
				reset = r.body.notifications.find((n: { kind: string; status: string }) => n.kind === "password.reset" && n.status === "SENT");
				return !!reset;
			});
			expect(reset).toMatchObject({ recipient: "mina@example.com", subject: "Reset your Dopamine Store password" });
			const token = /\/reset\?token=([A-Za-z0-9_-]+)/.exec(reset!.text)![1];
			expect((await h.post("/api/auth/password/reset", { token, password: "brand-new-pass-2" })).status).toBe(204);
			expect((await h.post("/api/auth/login", { loginId: "mina", password: "brand-new-pass-2" })).status).toBe(200);
			// Nothing was sent anywhere: no SMTP server saw it.
			expect(smtp.to("mina@example.com")).toHaveLength(0);
		} finally {
			await local.stop();
		}
	});
});
