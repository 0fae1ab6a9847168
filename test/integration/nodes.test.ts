import net from "node:net";
import { freePort } from "../../bench/lib/store";
import { api } from "../helpers/http";
import { databaseExists, dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { freshNamespace, NATS_URL, spawnNode, TEST_SECRET, waitFor } from "../helpers/nodes";

/** These tests start `node dist/server.js` as `npm start` does (npm test builds first). */

const healthy = (port: number) => async () => (await fetch(`http://127.0.0.1:${port}/api/health`)).status === 200;

describe("starting nodes", () => {
	it("creates and migrates a database that does not exist yet, then serves", async () => {
		const db = freshDatabaseUrl("fresh");
		let migrated = 0;
		expect(await databaseExists(db)).toBe(false);
		const port = await freePort();
		const node = spawnNode({ DATABASE_URL: db, PORT: String(port), METRICS_PORT: "0" });
		try {
			await waitFor("the node to become healthy", healthy(port));
			expect(await databaseExists(db)).toBe(true);
			migrated = (await sql(db, "SELECT name FROM migrations")).length;
			expect(migrated).toBeGreaterThan(0);
			const tables = await sql<{ table_name: string }>(db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
			expect(tables.map(t => t.table_name)).toEqual(expect.arrayContaining(["users", "products", "slots", "password_reset_tokens", "migrations"]));
			const signup = await api(`http://127.0.0.1:${port}`).post("/api/auth/signup", { loginId: "first", password: "first-password", email: "f@example.com" });
			expect(signup.status).toBe(201);
			expect(node.output()).toMatch(/JWT_SECRET is not set/);
		} finally {
			await node.stop();
		}
		// A second start finds the schema in place and migrates nothing twice.
		const again = spawnNode({ DATABASE_URL: db, PORT: String(port), METRICS_PORT: "0" });
		try {
			await waitFor("the restarted node to become healthy", healthy(port));
			const migrations = await sql(db, "SELECT name FROM migrations");
			expect(migrations).toHaveLength(migrated);
		} finally {
			await again.stop();
			await dropDatabase(db);
		}
	});

	it("refuses to start with a transporter but no JWT_SECRET, and says why", async () => {
		const node = spawnNode({ TRANSPORTER: NATS_URL, PORT: String(await freePort()), METRICS_PORT: "0" });
		const code = await node.exited;
		expect(code).toBe(2);
		expect(node.output()).toMatch(/JWT_SECRET is required when TRANSPORTER is set/);
	});

	it("refuses an unknown service name in SERVICES", async () => {
		const node = spawnNode({ SERVICES: "api,unicorns", PORT: String(await freePort()), METRICS_PORT: "0" });
		expect(await node.exited).toBe(2);
		expect(node.output()).toMatch(/unknown service\(s\): unicorns/);
	});

	it("runs two nodes side by side on one machine over NATS, split by SERVICES", async () => {
		const db = freshDatabaseUrl("pair");
		const namespace = freshNamespace("pair");
		const [gwPort, backPort, metricsA, metricsB] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
		const common = { DATABASE_URL: db, TRANSPORTER: NATS_URL, NAMESPACE: namespace, JWT_SECRET: TEST_SECRET };
		const gateway = spawnNode({ ...common, NODE_ID: "gw", SERVICES: "api", PORT: String(gwPort), METRICS_PORT: String(metricsA) });
		const backend = spawnNode({ ...common, NODE_ID: "back", SERVICES: "users,products", PORT: String(backPort), METRICS_PORT: String(metricsB) });
		try {
			await waitFor("the gateway to reach the backend over NATS", async () => {
				const r = await api(`http://127.0.0.1:${gwPort}`).get("/api/products");
				return r.status === 200;
			});
			const http = api(`http://127.0.0.1:${gwPort}`);
			expect((await http.post("/api/auth/signup", { loginId: "remote", password: "remote-password", email: "r@example.com" })).status).toBe(201);
			const login = await http.post("/api/auth/login", { loginId: "remote", password: "remote-password" });
			expect(login.status).toBe(200);
			expect((await http.get("/api/me", login.body.accessToken)).status).toBe(200);
			// Each node's own Prometheus listener, on its own METRICS_PORT.
			for (const [port, nodeId] of [[metricsA, "gw"], [metricsB, "back"]] as const) {
				const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
				expect(text).toContain(`nodeID="${nodeId}"`);
			}
			// The backend runs no gateway: its PORT stays free.
			await expect(fetch(`http://127.0.0.1:${backPort}/api/health`)).rejects.toThrow();
		} finally {
			await gateway.stop();
			await backend.stop();
			await dropDatabase(db);
		}
	});

	it("starts a second node whose metrics port is taken, with a warning instead of a crash", async () => {
		const db = freshDatabaseUrl("metrics");
		const namespace = freshNamespace("metrics");
		const [portA, portB, metrics] = await Promise.all([freePort(), freePort(), freePort()]);
		const common = { DATABASE_URL: db, TRANSPORTER: NATS_URL, NAMESPACE: namespace, JWT_SECRET: TEST_SECRET, METRICS_PORT: String(metrics) };
		const a = spawnNode({ ...common, NODE_ID: "a", PORT: String(portA) });
		try {
			await waitFor("node a", healthy(portA));
			const b = spawnNode({ ...common, NODE_ID: "b", PORT: String(portB) });
			try {
				await waitFor("node b", healthy(portB));
				expect(b.output()).toMatch(/Metrics listener on port \d+ not started/);
				const text = await (await fetch(`http://127.0.0.1:${portB}/metrics`)).text();
				expect(text).toContain('nodeID="b"');
			} finally {
				await b.stop();
			}
		} finally {
			await a.stop();
			await dropDatabase(db);
		}
	});

	it("opens the Moleculer REPL with --repl (npm run repl)", async () => {
		const db = freshDatabaseUrl("repl");
		const node = spawnNode({ DATABASE_URL: db, PORT: String(await freePort()), METRICS_PORT: "0" }, ["--repl"]);
		try {
			await waitFor("the REPL prompt", () => /mol \$/.test(node.output()));
			node.proc.stdin!.write("services\n");
			await waitFor("the services table", () => /products/.test(node.output()) && /users/.test(node.output()));
			node.proc.stdin!.write("quit\n");
			expect(await node.exited).toBe(0);
		} finally {
			await node.stop();
			await dropDatabase(db);
		}
	});

	it("puts Agenda on MongoDB with AGENDA_BACKEND=mongo (no MongoDB here: the node tries it and says so)", async () => {
		const db = freshDatabaseUrl("mongo");
		const node = spawnNode({
			DATABASE_URL: db,
			PORT: String(await freePort()),
			METRICS_PORT: "0",
			AGENDA_BACKEND: "mongo",
			MONGO_URL: "mongodb://127.0.0.1:9/agenda?serverSelectionTimeoutMS=500&connectTimeoutMS=500",
		});
		try {
			expect(await node.exited).toBe(1);
			expect(node.output()).toMatch(/MongoServerSelectionError|connect ECONNREFUSED 127\.0\.0\.1:9/);
		} finally {
			await dropDatabase(db);
		}
	});

	it("fails clearly when its HTTP port is taken", async () => {
		const blocker = net.createServer();
		const port = await new Promise<number>(r => blocker.listen(0, () => r((blocker.address() as net.AddressInfo).port)));
		const db = freshDatabaseUrl("portclash");
		try {
			const node = spawnNode({ DATABASE_URL: db, PORT: String(port), METRICS_PORT: "0" });
			const code = await node.exited;
			expect(code).not.toBe(0);
			expect(node.output()).toMatch(new RegExp(`HTTP port ${port} is not available`));
		} finally {
			blocker.close();
			await dropDatabase(db);
		}
	});
});
