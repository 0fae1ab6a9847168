import { ChildProcess, spawn } from "node:child_process";
import { freePort } from "../helpers/nats-server";
import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { track, untrack } from "../helpers/resources";
import { claim, createSale, seedBuyers } from "../helpers/sale";

/**
 * Issue 21: Redis down. The attempt counters (logins, sign-ups) fall back to each node's own
 * memory with a warning, /api/health says `degraded` (200, so the balancer keeps the node), and
 * claims do not notice. A private redis-server on a port of its own: the shared one is never touched.
 */

const DB = freshDatabaseUrl("redisdown");
let redis: ChildProcess | null = null;
let port = 0;
let node: StoreNode | null = null;
const key = {};

async function startRedis(): Promise<void> {
	if (!port) port = await freePort();
	const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
	redis = proc;
	track(key, { name: `redis-server ${proc.pid}`, close: () => killRedis() });
	await waitFor("redis-server to listen", async () => {
		const net = await import("node:net");
		return new Promise<boolean>(r => {
			const s = net.connect(port, "127.0.0.1", () => (s.destroy(), r(true)));
			s.on("error", () => r(false));
		});
	}, 10_000);
}

async function killRedis(): Promise<void> {
	const proc = redis;
	redis = null;
	if (proc && proc.exitCode === null && proc.signalCode === null) {
		const exited = new Promise(r => proc.once("exit", r));
		proc.kill("SIGKILL");
		await exited;
	}
	untrack(key);
}

beforeAll(async () => {
	await startRedis();
	node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, REDIS_URL: `redis://127.0.0.1:${port}`, LOGIN_FAILURES_PER_MINUTE: "3", CLAIM_RATE_PER_SECOND: "100", LOG_LEVEL: "error" });
});
afterAll(async () => {
	await node?.stop();
	await killRedis();
	await dropDatabase(DB);
});

describe("Redis down", () => {
	it("logins and sign-ups go on with this node's own limits, health says degraded (200), claims are unaffected; back to ok when Redis returns", async () => {
		const shop = api(node!.url);
		expect((await shop.get("/api/health")).body).toEqual({ status: "ok" });
		expect((await shop.post("/api/auth/signup", { loginId: "before1", password: "password-1", email: "before1@example.com" })).status).toBe(201);

		await killRedis();
		// The fault struck: Redis is gone, and the node knows.
		await waitFor("health to say degraded", async () => (await shop.get("/api/health")).body?.status === "degraded", 10_000);
		const health = await shop.get("/api/health");
		expect(health.status).toBe(200);
		expect(health.body.degraded[0]).toMatchObject({ node: node!.broker.nodeID, reason: expect.stringMatching(/Redis/) });

		// Sign-ups and logins go on (no 500) ...
		expect((await shop.post("/api/auth/signup", { loginId: "during1", password: "password-1", email: "during1@example.com" })).status).toBe(201);
		const login = await shop.post("/api/auth/login", { loginId: "during1", password: "password-1" });
		expect(login.status).toBe(200);
		expect(login.body.accessToken).toEqual(expect.any(String));
		// ... and the limit still holds, counted on this node: 3 failures, then 429.
		const failures = [];
		for (let i = 0; i < 5; i++) failures.push((await shop.post("/api/auth/login", { loginId: "during1", password: "wrong-password" })).status);
		expect(failures).toEqual([401, 401, 401, 429, 429]);

		// Claims do not touch Redis.
		const product = await createSale(DB, 2);
		const buyers = await seedBuyers(DB, 3, "redisdown");
		const replies = [];
		for (const b of buyers) replies.push((await claim(node!.url, product, b)).status);
		expect(replies).toEqual([201, 201, 409]);

		await startRedis();
		await waitFor("health to say ok again", async () => (await shop.get("/api/health")).body?.status === "ok", 20_000);
		expect((await shop.post("/api/auth/login", { loginId: "during1", password: "wrong-password" })).status).toBe(401);
	});
});
