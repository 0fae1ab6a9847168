import { connect } from "nats";
import { ConfigError, loadConfig } from "../../config";
import { streamNameOf } from "../../lib/channels";
import { publishMessages } from "../../mixins/notify.mixin";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { natsOptions } from "../helpers/jetstream";
import { AuthNats } from "../helpers/nats-server";
import { freshNamespace, spawnNode, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { claim, createSale, seedBuyers } from "../helpers/sale";
import { TestSmtp } from "../helpers/smtp";
import { CHANNELS } from "../../services/notifier/transports";

/**
 * Issue 21, point 3: a NATS that requires a login. The store's two NATS connections (Moleculer's
 * transporter and the channels adapter's JetStream connection) both log in with the credentials
 * written in TRANSPORTER; before, the adapter kept only the host and the node failed to start
 * with "Authorization Violation". A client without the login is refused by the server.
 */

const DB = freshDatabaseUrl("natsauth");
const nats = new AuthNats("store", "p@ss:w/rd-with-signs");
let smtp: TestSmtp;
const nodes: StoreNode[] = [];

beforeAll(async () => {
	await nats.start();
	smtp = await TestSmtp.start();
});
afterAll(async () => {
	for (const n of nodes) await n.stop();
	await smtp?.stop();
	await nats.kill();
	nats.cleanup();
	await dropDatabase(DB);
});

describe("a store on a NATS with a user and password", () => {
	it("starts with the login in TRANSPORTER, serves a claim across nodes, and its notifications travel through JetStream to the mailbox", async () => {
		const NS = freshNamespace("auth");
		// NATS_ALLOW_ANONYMOUS: "" so a node that lost its login would refuse rather than try anonymously.
		const env = (id: string, services: string) => ({
			DATABASE_URL: DB,
			JWT_SECRET: TEST_SECRET,
			TRANSPORTER: nats.url,
			NATS_ALLOW_ANONYMOUS: "",
			NAMESPACE: NS,
			NODE_ID: id,
			SERVICES: services,
			SMTP_URL: smtp.url,
			NOTIFIER_POLL_MS: "200",
			LOG_LEVEL: "warn",
		});
		nodes.push(await startNode(env("auth-core", "users,products,slots,allocator,payments,notifier,sales")));
		nodes.push(await startNode(env("auth-gw", "api")));
		const [core, gw] = nodes;

		// Both connections are up: the transporter's (the gateway sees the core node) ...
		await waitFor("the gateway to see the allocator", () => gw.broker.registry.getServiceList({ onlyAvailable: true }).some((s: any) => s.name === "allocator"), 20_000);
		const product = await createSale(DB, 1);
		const [buyer] = await seedBuyers(DB, 1, "authbuyer");
		const reply = await claim(gw.url, product, buyer);
		expect(reply.status).toBe(201);
		const granted = await sql<{ n: string }>(DB, "SELECT count(*) AS n FROM slots WHERE product_id = $1 AND user_id = $2 AND status = 'HELD'", [product, buyer.id]);
		expect(granted[0].n).toBe("1");

		// ... and the channels adapter's: a message published on the gateway is in the private
		// server's stream and reaches the SMTP server through the notifier on the other node.
		await publishMessages(gw.broker, [{ kind: "test.auth", channel: "email", recipient: "auth-check@example.com", subject: "auth", text: "through JetStream", dedupeKey: `auth-${NS}` }]);
		await waitFor("the message to be mailed", () => smtp.to("auth-check@example.com").length === 1, 20_000);
		const nc = await connect(natsOptions(nats.url));
		try {
			const info = await (await nc.jetstreamManager()).streams.info(streamNameOf(NS));
			expect(info.state.messages).toBeGreaterThanOrEqual(1);
		} finally {
			await nc.close();
		}
		expect(core.broker.nodeID).toBe("auth-core");
	});

	it("refuses a client without the login, and one with a wrong password", async () => {
		await expect(connect({ servers: `127.0.0.1:${nats.port}`, reconnect: false })).rejects.toThrow(/Authorization Violation/i);
		await expect(connect({ servers: `127.0.0.1:${nats.port}`, user: "store", pass: "wrong", reconnect: false })).rejects.toThrow(/Authorization Violation/i);
	});

	it("a node with TRANSPORTER but no credentials refuses to start, saying what to set", async () => {
		const child = spawnNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, TRANSPORTER: nats.anonymousUrl, NATS_ALLOW_ANONYMOUS: "", PORT: "0", METRICS_PORT: "0" });
		const code = await child.exited;
		expect(code).not.toBe(0);
		expect(child.output()).toMatch(/NATS_USER/);
		expect(child.output()).toMatch(/nats:\/\/user:password@/);
		// The message names what to set and never echoes a password.
		expect(() => loadConfig({ JWT_SECRET: TEST_SECRET, TRANSPORTER: nats.anonymousUrl }, CHANNELS)).toThrow(ConfigError);
	});
});

describe("NATS credentials in the config", () => {
	const base = { JWT_SECRET: TEST_SECRET };
	it("takes the login from the URL, decoded, and keeps it out of the transporter string that may be logged", () => {
		const c = loadConfig({ ...base, TRANSPORTER: "nats://store:p%40ss@10.0.0.1:4222,nats://store:p%40ss@10.0.0.2:4222" }, CHANNELS);
		expect(c.nats).toEqual({ servers: ["10.0.0.1:4222", "10.0.0.2:4222"], user: "store", pass: "p@ss" });
		expect(c.transporter).toBe("nats://10.0.0.1:4222,nats://10.0.0.2:4222");
	});
	it("takes NATS_USER with NATS_PASSWORD, or with NATS_PASSWORD_FILE", () => {
		expect(loadConfig({ ...base, TRANSPORTER: "nats://h:4222", NATS_USER: "u", NATS_PASSWORD: "pw" }, CHANNELS).nats).toEqual({ servers: ["h:4222"], user: "u", pass: "pw" });
		const file = require("node:path").join(require("node:os").tmpdir(), `nats-pw-${process.pid}`);
		require("node:fs").writeFileSync(file, "from-file\n");
		try {
			expect(loadConfig({ ...base, TRANSPORTER: "nats://h:4222", NATS_USER: "u", NATS_PASSWORD_FILE: file }, CHANNELS).nats?.pass).toBe("from-file");
		} finally {
			require("node:fs").rmSync(file);
		}
		expect(() => loadConfig({ ...base, TRANSPORTER: "nats://h:4222", NATS_USER: "u", NATS_PASSWORD_FILE: "/nonexistent/pw" }, CHANNELS)).toThrow(/NATS_PASSWORD_FILE cannot be read: ENOENT/);
	});
	it("refuses half a login, two different logins, and no login unless NATS_ALLOW_ANONYMOUS=true", () => {
		expect(() => loadConfig({ ...base, TRANSPORTER: "nats://h:4222", NATS_USER: "u" }, CHANNELS)).toThrow(/NATS_PASSWORD/);
		expect(() => loadConfig({ ...base, TRANSPORTER: "nats://a:b@h:4222,nats://c:d@g:4222" }, CHANNELS)).toThrow(/different credentials/);
		expect(() => loadConfig({ ...base, TRANSPORTER: "nats://h:4222" }, CHANNELS)).toThrow(/NATS_ALLOW_ANONYMOUS=true/);
		expect(loadConfig({ ...base, TRANSPORTER: "nats://h:4222", NATS_ALLOW_ANONYMOUS: "true" }, CHANNELS).nats).toEqual({ servers: ["h:4222"], user: undefined, pass: undefined });
		expect(loadConfig({}, CHANNELS).nats).toBeNull();
	});
});
