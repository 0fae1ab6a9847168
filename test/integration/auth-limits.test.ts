import { Client } from "pg";
import { api, Reply } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { freshNamespace, REDIS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";

/**
 * Limits on the account routes: login failures counted before the password check, sign-up,
 * forgot-password and reset limited per e-mail and per client address, forgot-password answering
 * by the same path whether an account exists or not, and the client address taken from
 * X-Forwarded-For only through TRUSTED_PROXIES.
 *
 * The file's node trusts loopback, so each test speaks from its own client addresses
 * (X-Forwarded-For) and per-address counts of one test never meet another's.
 */
const DB = freshDatabaseUrl("authlimits");
const LIMITS = {
	LOGIN_FAILURES_PER_MINUTE: "5,3",
	LOGIN_FAILURES_PER_MINUTE_PER_ID: "10",
	SIGNUPS_PER_HOUR: "2,3",
	PASSWORD_FORGOT_PER_HOUR: "2,3",
	PASSWORD_RESETS_PER_HOUR: "3",
};
let node: StoreNode;

beforeAll(async () => {
	node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRUSTED_PROXIES: "loopback", ...LIMITS });
});
afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

let nextAddress = 1;
/** A client address no other request of this file used. */
const freshAddress = () => `203.0.113.${nextAddress++}`;
/** Requests to `base` as if from `address`, through a trusted proxy on loopback. */
const from = (address: string, base = node.url) => {
	const http = api(base);
	return { post: <T = any>(path: string, body?: unknown) => http.post<T>(path, body, undefined, { "x-forwarded-for": address }) };
};

async function signup(loginId: string, password = "right-password-1"): Promise<void> {
	const r = await from(freshAddress()).post("/api/auth/signup", { loginId, password, email: `${loginId}@example.com` });
	if (r.status !== 201) throw new Error(`setup sign-up of ${loginId}: ${r.status} ${r.text}`);
}

function expectLimited(r: Reply, maxSeconds: number) {
	expect([r.status, r.body?.type]).toEqual([429, "RATE_LIMITED"]);
	const retryAfter = Number(r.headers.get("retry-after"));
	expect(retryAfter).toBeGreaterThanOrEqual(1);
	expect(retryAfter).toBeLessThanOrEqual(maxSeconds);
}

function tally(replies: Reply[]): Record<number, number> {
	const out: Record<number, number> = {};
	for (const r of replies) out[r.status] = (out[r.status] ?? 0) + 1;
	return out;
}

describe("login failures are counted before the password check", () => {
	it("lets at most LOGIN_FAILURES_PER_MINUTE_PER_ID of fifty simultaneous wrong logins from fifty addresses reach the check; the rest answer 429 with Retry-After", async () => {
		await signup("burst-target");
		// Fifty addresses, so that only the login id's ceiling across addresses (10) can refuse them.
		const replies = await Promise.all(
			Array.from({ length: 50 }, () => from(freshAddress()).post("/api/auth/login", { loginId: "burst-target", password: "wrong-password" }))
		);
		const counts = tally(replies);
		expect(Object.keys(counts).sort()).toEqual(["401", "429"]);
		expect(counts[401]).toBeGreaterThanOrEqual(1);
		expect(counts[401]).toBeLessThanOrEqual(10);
		for (const r of replies.filter(r => r.status === 429)) expectLimited(r, 60);
		// Past the ceiling the right password is refused too until the window ends (a guess from as many
		// addresses as the ceiling; from one address the guesser locks out only itself: security-login.test.ts).
		expectLimited(await from(freshAddress()).post("/api/auth/login", { loginId: "burst-target", password: "right-password-1" }), 60);
	});

	it("gives a successful login's attempt back to its address, and clears the login id's count", async () => {
		await signup("good-user");
		const address = freshAddress();
		// Per-address limit 3: three right logins from one address are no failures.
		for (let i = 0; i < 4; i++) expect((await from(address).post("/api/auth/login", { loginId: "good-user", password: "right-password-1" })).status).toBe(200);
		for (let i = 0; i < 3; i++) expect((await from(address).post("/api/auth/login", { loginId: `nobody-${i}`, password: "wrong-password" })).status).toBe(401);
		expectLimited(await from(address).post("/api/auth/login", { loginId: "nobody-9", password: "wrong-password" }), 60);
	});

	it("holds across two gateways sharing Redis: at most the limit of fifty simultaneous wrong logins answer 401", async () => {
		const db = freshDatabaseUrl("authlimitsredis");
		const env = { DATABASE_URL: db, JWT_SECRET: TEST_SECRET, REDIS_URL, NAMESPACE: freshNamespace("burst"), LOGIN_FAILURES_PER_MINUTE: "5,1000" };
		const a = await startNode(env);
		const b = await startNode(env);
		try {
			const s = await api(a.url).post("/api/auth/signup", { loginId: "shared-target", password: "right-password-1", email: "st@example.com" });
			expect(s.status).toBe(201);
			const replies = await Promise.all(
				Array.from({ length: 50 }, (_, i) => api(i % 2 ? a.url : b.url).post("/api/auth/login", { loginId: "shared-target", password: "wrong-password" }))
			);
			const counts = tally(replies);
			expect(Object.keys(counts).sort()).toEqual(["401", "429"]);
			expect(counts[401]).toBeGreaterThanOrEqual(1);
			expect(counts[401]).toBeLessThanOrEqual(5);
			for (const r of replies.filter(r => r.status === 429)) expectLimited(r, 60);
		} finally {
			await a.stop();
			await b.stop();
			await dropDatabase(db);
		}
	});
});

describe("forgot-password answers by the same path whether the account exists or not", () => {
	it("answers 202 at once for a known and an unknown address while the accounts' tables are locked; the message follows", async () => {
		await signup("locked-out");
		const lock = new Client({ connectionString: DB });
		await lock.connect();
		const before = node.messages.length;
		try {
			await lock.query("BEGIN");
			await lock.query("LOCK TABLE users, password_reset_tokens IN ACCESS EXCLUSIVE MODE");
			// Nothing the answer waits for touches the database: both answer while the lock is held.
			for (const email of ["locked-out@example.com", "nobody-at-all@example.com"]) {
				const t0 = Date.now();
				const r = await fetch(`${node.url}/api/auth/password/forgot`, {
					method: "POST",
					headers: { "content-type": "application/json", "x-forwarded-for": freshAddress() },
					body: JSON.stringify({ email }),
					signal: AbortSignal.timeout(5_000),
				});
				expect([email, r.status]).toEqual([email, 202]);
				expect(Date.now() - t0).toBeLessThan(3_000);
			}
			expect(node.messages.slice(before).filter(m => m.kind === "password.reset")).toHaveLength(0);
		} finally {
			await lock.query("COMMIT").catch(() => undefined);
			await lock.end();
		}
		await waitFor("the reset message", () => node.messages.slice(before).some(m => m.kind === "password.reset" && m.recipient === "locked-out@example.com"), 10_000);
		expect(node.messages.slice(before).filter(m => m.recipient === "nobody-at-all@example.com")).toHaveLength(0);
	});

	it("limits forgot-password per e-mail, for a known and an unknown address alike, and sends nothing past the limit", async () => {
		await signup("forgetful");
		const before = node.messages.length;
		for (const email of ["forgetful@example.com", "ghost-forgetful@example.com"]) {
			for (let i = 0; i < 2; i++) expect((await from(freshAddress()).post("/api/auth/password/forgot", { email })).status).toBe(202);
			expectLimited(await from(freshAddress()).post("/api/auth/password/forgot", { email: email.toUpperCase() }), 3600);
		}
		await waitFor("two reset messages", () => node.messages.slice(before).filter(m => m.recipient === "forgetful@example.com").length >= 2, 10_000);
		await new Promise(r => setTimeout(r, 300));
		expect(node.messages.slice(before).filter(m => m.recipient === "forgetful@example.com")).toHaveLength(2);
	});

	it("limits forgot-password per client address across e-mails", async () => {
		const address = freshAddress();
		for (let i = 0; i < 3; i++) expect((await from(address).post("/api/auth/password/forgot", { email: `spray${i}@example.com` })).status).toBe(202);
		expectLimited(await from(address).post("/api/auth/password/forgot", { email: "spray9@example.com" }), 3600);
	});

	it("prunes expired reset tokens", async () => {
		await signup("pruned");
		await sql(
			DB,
			`INSERT INTO password_reset_tokens (user_id, token_hash, expires_at)
			 SELECT u.id, md5(g::text) || md5(g::text || 'x'), now() - interval '1 minute' * g
			 FROM users u, generate_series(1, 40) g WHERE u.login_id = 'pruned'`
		);
		await sql(DB, `INSERT INTO password_reset_tokens (user_id, token_hash, expires_at) SELECT id, repeat('f', 64), now() + interval '10 minutes' FROM users WHERE login_id = 'pruned'`);
		expect((await from(freshAddress()).post("/api/auth/password/forgot", { email: "someone-else@example.com" })).status).toBe(202);
		await waitFor("expired tokens pruned", async () => (await sql(DB, "SELECT 1 FROM password_reset_tokens WHERE expires_at < now()")).length === 0, 10_000);
		expect(await sql(DB, "SELECT 1 FROM password_reset_tokens WHERE token_hash = repeat('f', 64)")).toHaveLength(1);
	});
});

describe("sign-up and reset limits", () => {
	it("limits sign-up per e-mail (a welcome message each) and per client address", async () => {
		for (let i = 0; i < 2; i++) expect((await from(freshAddress()).post("/api/auth/signup", { loginId: `victim-${i}`, password: "long-enough-1", email: "victim@example.com" })).status).toBe(201);
		expectLimited(await from(freshAddress()).post("/api/auth/signup", { loginId: "victim-2", password: "long-enough-1", email: "VICTIM@example.com" }), 3600);

		const address = freshAddress();
		for (let i = 0; i < 3; i++) expect((await from(address).post("/api/auth/signup", { loginId: `farm-${i}`, password: "long-enough-1", email: `farm${i}@example.com` })).status).toBe(201);
		expectLimited(await from(address).post("/api/auth/signup", { loginId: "farm-3", password: "long-enough-1", email: "farm3@example.com" }), 3600);
		expect(await sql(DB, "SELECT 1 FROM users WHERE login_id IN ('victim-2', 'farm-3')")).toHaveLength(0);
	});

	it("limits password resets per client address, wrong tokens included", async () => {
		const address = freshAddress();
		for (let i = 0; i < 3; i++) {
			const r = await from(address).post("/api/auth/password/reset", { token: `wrong-token-${i}`, password: "new-password-1" });
			expect([r.status, r.body.type]).toEqual([400, "INVALID_TOKEN"]);
		}
		expectLimited(await from(address).post("/api/auth/password/reset", { token: "wrong-token-9", password: "new-password-1" }), 3600);
	});
});

describe("client address: X-Forwarded-For only through TRUSTED_PROXIES", () => {
	it("takes each client's own address behind a trusted proxy, and the nearest untrusted hop when the header is a chain", async () => {
		const guesser = freshAddress();
		const bystander = freshAddress();
		for (let i = 0; i < 3; i++) expect((await from(guesser).post("/api/auth/login", { loginId: `ghost-${i}`, password: "wrong-password" })).status).toBe(401);
		expectLimited(await from(guesser).post("/api/auth/login", { loginId: "ghost-3", password: "wrong-password" }), 60);
		// Another buyer behind the same proxy is not limited by the guesser's failures.
		expect((await from(bystander).post("/api/auth/login", { loginId: "ghost-4", password: "wrong-password" })).status).toBe(401);
		// A client cannot pick its address by writing one in front: the proxy appended the real one.
		expect((await from(`${guesser}, ${freshAddress()}`).post("/api/auth/login", { loginId: "ghost-5", password: "wrong-password" })).status).toBe(401);
		expectLimited(await from(`${freshAddress()}, ${guesser}`).post("/api/auth/login", { loginId: "ghost-6", password: "wrong-password" }), 60);
	});

	it("ignores X-Forwarded-For when TRUSTED_PROXIES is unset: every request counts against the socket's address", async () => {
		const db = freshDatabaseUrl("authlimitsxff");
		const plain = await startNode({ DATABASE_URL: db, JWT_SECRET: TEST_SECRET, LOGIN_FAILURES_PER_MINUTE: "100,3" });
		try {
			for (let i = 0; i < 3; i++) expect((await from(`198.51.100.${i}`, plain.url).post("/api/auth/login", { loginId: `spoof-${i}`, password: "wrong-password" })).status).toBe(401);
			expectLimited(await from("198.51.100.200", plain.url).post("/api/auth/login", { loginId: "spoof-9", password: "wrong-password" }), 60);
		} finally {
			await plain.stop();
			await dropDatabase(db);
		}
	});
});
