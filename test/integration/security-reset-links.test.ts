import { connect } from "nats";
import { streamNameOf } from "../../lib/channels";
import { SEALED_PLACEHOLDER } from "../../lib/sealed";
import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { freshNamespace, NATS_URL, spawnNode, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { TestSmtp } from "../helpers/smtp";

/**
 * Issue 22, point 3: with SMTP configured, no stored or listed text carries a usable reset token:
 * not the delivery log, not the admins' list, not the JetStream stream. The mail itself does.
 */
const DB = freshDatabaseUrl("reset_links");
const NS = freshNamespace("resetlinks");
const ADMIN = { ADMIN_LOGIN_ID: "keeper", ADMIN_PASSWORD: "keeper-password-1", ADMIN_EMAIL: "keeper@example.com" };
let smtp: TestSmtp;
let node: StoreNode;

beforeAll(async () => {
	smtp = await TestSmtp.start();
	node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: NS, SMTP_URL: smtp.url, NOTIFIER_POLL_MS: "100", LOCALE: "en", ...ADMIN });
});
afterAll(async () => {
	await node?.stop();
	await smtp?.stop();
	await dropDatabase(DB);
});

/** Every message the namespace's notifications stream holds, as text. */
async function streamTexts(): Promise<string[]> {
	const nc = await connect({ servers: new URL(NATS_URL).host });
	try {
		const jsm = await nc.jetstreamManager();
		const name = streamNameOf(NS);
		const info = await jsm.streams.info(name);
		const out: string[] = [];
		for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
			const m = await jsm.streams.getMessage(name, { seq }).catch(() => null);
			if (m) out.push(new TextDecoder().decode(m.data));
		}
		return out;
	} finally {
		await nc.close();
	}
}

describe("password-reset links with SMTP configured", () => {
	it("the mail carries a working link; the log, the admins' list and the stream hold none", async () => {
		const http = api(node.url);
		expect((await http.post("/api/auth/signup", { loginId: "mina", password: "mina-password-1", email: "mina@example.com" })).status).toBe(201);
		expect((await http.post("/api/auth/password/forgot", { email: "mina@example.com" })).status).toBe(202);
		await waitFor("the reset mail at the SMTP server", () => smtp.to("mina@example.com").some(m => m.kind === "password.reset"), 15_000);
		const mail = smtp.to("mina@example.com").find(m => m.kind === "password.reset")!;
		const token = /\/reset\?token=([A-Za-z0-9_-]+)/.exec(mail.text)?.[1];
		expect(token).toBeDefined();

		// Stored: the delivery log's row.
		const rows = await sql<{ text: string; subject: string; last_error: string | null }>(DB, "SELECT text, subject, last_error FROM deliveries WHERE kind = 'password.reset'");
		expect(rows).toHaveLength(1);
		expect(JSON.stringify(rows)).not.toContain(token!);
		expect(rows[0].text).not.toMatch(/reset\?token=/);
		// Listed: what every admin reads.
		const admin = (await http.post("/api/auth/login", { loginId: "keeper", password: "keeper-password-1" })).body.accessToken;
		const list = await http.get("/api/admin/notifications?channel=email", admin);
		const listed = list.body.notifications.find((n: { kind: string }) => n.kind === "password.reset");
		expect(listed.status).toBe("SENT");
		expect(listed.text).toContain(SEALED_PLACEHOLDER);
		expect(list.text).not.toContain(token!);
		// Kept by JetStream.
		const kept = await streamTexts();
		expect(kept.some(t => t.includes("password.reset"))).toBe(true);
		expect(kept.filter(t => t.includes(token!))).toEqual([]);

		// And the link the mail carried works.
		expect((await http.post("/api/auth/password/reset", { token, password: "mina-new-password-2" })).status).toBe(204);
	});
});

describe("the local mailbox", () => {
	it("says at start-up that admins can read reset links there", async () => {
		const child = spawnNode({ DATABASE_URL: DB, PORT: "0", METRICS_PORT: "0", SERVICES: "notifier" });
		try {
			await waitFor("the mailbox warning", () => /every admin can read it there, password-reset links included/.test(child.output()), 30_000);
		} finally {
			await child.stop();
		}
	});
});
