import jwt from "jsonwebtoken";
import { api, Reply } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { createSale } from "../helpers/sale";
import { asAdmin, opened } from "../helpers/identity";

/**
 * Tokens issued before a password reset or a role change stop working: at once on every route but
 * the claim route (the gateway asks the users service), and on the claim route within seconds
 * (each gateway keeps the revocations in memory, from a broadcast and a re-read every few seconds).
 */
const DB = freshDatabaseUrl("authrevoke");
const NS = freshNamespace("revoke");
const ENV = { DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: NS, CLAIM_RATE_PER_SECOND: "1000", LOG_LEVEL: "warn" };
/** Runs every service, gateway included. */
let core: StoreNode;
/** A second gateway on its own node: it learns revocations over NATS. */
let edge: StoreNode;
/** A sale that opens next year: a valid token's claim answers 409 SALE_NOT_OPEN, a revoked one 401. */
let product: string;

beforeAll(async () => {
	core = await startNode({ ...ENV, NODE_ID: `core-${NS}` });
	edge = await startNode({ ...ENV, NODE_ID: `edge-${NS}`, SERVICES: "api" });
	await waitFor("the edge gateway to see the users service", () => edge.broker.registry.getServiceList({}).some(s => s.name === "users"));
	product = await createSale(DB, 2, new Date(Date.now() + 365 * 86_400_000));
}, 60_000);

afterAll(async () => {
	await edge?.stop();
	await core?.stop();
	await dropDatabase(DB);
});

const claims = (token: string) => jwt.decode(token, { json: true }) as { iat: number; role: string };

async function signup(loginId: string, password = "old-password-1"): Promise<string> {
	const s = await api(core.url).post("/api/auth/signup", { loginId, password, email: `${loginId}@example.com` });
	if (s.status !== 201) throw new Error(`setup sign-up: ${s.status} ${s.text}`);
	return s.body.user.id;
}

async function login(loginId: string, password: string, base = core.url): Promise<string> {
	const l = await api(base).post("/api/auth/login", { loginId, password });
	if (l.status !== 200) throw new Error(`login of ${loginId}: ${l.status} ${l.text}`);
	return l.body.accessToken;
}

/** A reset token for `loginId`, from the message the forgot-password request sends after its 202. */
async function resetTokenFor(loginId: string): Promise<string> {
	const before = core.messages.length;
	expect((await api(core.url).post("/api/auth/password/forgot", { email: `${loginId}@example.com` })).status).toBe(202);
	const mail = () => core.messages.slice(before).find(m => m.kind === "password.reset" && m.recipient === `${loginId}@example.com`);
	await waitFor("the reset message", () => !!mail(), 10_000);
	return /token=([A-Za-z0-9_-]+)/.exec(opened(core.broker, mail()!.text))![1];
}

const claim = (base: string, token: string) => api(base).post(`/api/products/${product}/slots`, undefined, token);

/** How long until the claim route at `base` refuses `token`; fails after `ms`. */
async function claimRefusedWithin(base: string, token: string, ms: number): Promise<number> {
	const t0 = Date.now();
	let last: Reply | undefined;
	while (Date.now() - t0 < ms) {
		last = await claim(base, token);
		if (last.status === 401) return Date.now() - t0;
		expect(last.status).toBe(409);
		await new Promise(r => setTimeout(r, 100));
	}
	throw new Error(`the claim route still answered ${last?.status} after ${ms} ms`);
}

describe("a password reset revokes the tokens issued before it", () => {
	it("at once on every route but the claim route, at both gateways; within seconds on the claim route; a new login works at once", async () => {
		await signup("resetter");
		const old = await login("resetter", "old-password-1");
		for (const base of [core.url, edge.url]) {
			expect((await api(base).get("/api/me", old)).status).toBe(200);
			expect((await claim(base, old)).status).toBe(409);
		}
		const resetToken = await resetTokenFor("resetter");
		expect((await api(core.url).post("/api/auth/password/reset", { token: resetToken, password: "new-password-2" })).status).toBe(204);
		// Straight after the 204, with no wait, on both gateways.
		for (const base of [edge.url, core.url]) {
			for (const path of ["/api/me", "/api/me/slots", "/api/me/payments"]) {
				const r = await api(base).get(path, old);
				expect([base, path, r.status, r.body.type]).toEqual([base, path, 401, "UNAUTHORIZED"]);
			}
		}
		// The claim route has no database read: it learns by broadcast (or the re-read) within seconds.
		for (const base of [edge.url, core.url]) expect(await claimRefusedWithin(base, old, 6_000)).toBeLessThan(6_000);

		// A login right after the reset, even within the same second, gets a token that works everywhere.
		const fresh = await login("resetter", "new-password-2", edge.url);
		for (const base of [edge.url, core.url]) {
			expect((await api(base).get("/api/me", fresh)).status).toBe(200);
			expect((await claim(base, fresh)).status).toBe(409);
		}
		const [row] = await sql<{ nb: string }>(DB, "SELECT extract(epoch FROM tokens_not_before)::bigint AS nb FROM users WHERE login_id = 'resetter'");
		expect(claims(old).iat).toBeLessThan(Number(row.nb));
		expect(claims(fresh).iat).toBeGreaterThanOrEqual(Number(row.nb));
	});

	it("draws the line at the second: a token issued in the same second before the reset dies, one after it lives", async () => {
		await signup("sameseconder");
		const resetToken = await resetTokenFor("sameseconder");
		// Start at the beginning of a second so that the login, the reset and the next login share it as far as they can.
		await new Promise(r => setTimeout(r, 1000 - (Date.now() % 1000)));
		const before = await login("sameseconder", "old-password-1");
		expect((await api(core.url).post("/api/auth/password/reset", { token: resetToken, password: "new-password-2" })).status).toBe(204);
		const after = await login("sameseconder", "new-password-2");
		expect(claims(after).iat).toBeGreaterThan(claims(before).iat);
		expect((await api(core.url).get("/api/me", before)).status).toBe(401);
		expect((await api(core.url).get("/api/me", after)).status).toBe(200);
		expect((await claim(core.url, after)).status).toBe(409);
	});
});

describe("a role change revokes the tokens that carry the old role", () => {
	it("made by SQL (no broadcast): at once on every route but the claim route, at both gateways", async () => {
		const id = await signup("promoted");
		const buyerToken = await login("promoted", "old-password-1");
		expect((await api(edge.url).get("/api/me", buyerToken)).status).toBe(200);
		await sql(DB, "UPDATE users SET role = 'admin' WHERE id = $1", [id]);
		for (const base of [core.url, edge.url]) expect((await api(base).get("/api/me", buyerToken)).status).toBe(401);
		const adminToken = await login("promoted", "old-password-1");
		expect(claims(adminToken).role).toBe("admin");
		expect((await api(edge.url).get("/api/me", adminToken)).body.user.role).toBe("admin");
	});

	it("made by SQL (no broadcast): within seconds on the claim route, at both gateways, from their periodic re-read", async () => {
		const id = await signup("promoted-quietly");
		const buyerToken = await login("promoted-quietly", "old-password-1");
		for (const base of [edge.url, core.url]) expect((await claim(base, buyerToken)).status).toBe(409);
		await sql(DB, "UPDATE users SET role = 'admin' WHERE id = $1", [id]);
		// Nothing else is sent with this token: only the gateways' re-read of users.revocations can tell them.
		const waited = await Promise.all([edge.url, core.url].map(base => claimRefusedWithin(base, buyerToken, 10_000)));
		for (const ms of waited) expect(ms).toBeLessThan(10_000);
	});

	it("made by the operators' users.setRole: broadcast, so the claim route refuses within a second", async () => {
		const id = await signup("demoted");
		await sql(DB, "UPDATE users SET role = 'admin' WHERE id = $1", [id]);
		const adminToken = await login("demoted", "old-password-1");
		expect((await claim(edge.url, adminToken)).status).toBe(409);
		const answer = await core.broker.call("users.setRole", { id, role: "buyer" }, asAdmin(core.broker));
		expect(answer).toMatchObject({ user: { id, role: "buyer" } });
		expect((await api(edge.url).get("/api/me", adminToken)).status).toBe(401);
		expect(await claimRefusedWithin(edge.url, adminToken, 3_000)).toBeLessThan(3_000);
		// Setting the role it already has revokes nothing.
		const buyerToken = await login("demoted", "old-password-1");
		await core.broker.call("users.setRole", { id, role: "buyer" }, asAdmin(core.broker));
		expect((await api(edge.url).get("/api/me", buyerToken)).status).toBe(200);
	});
});
