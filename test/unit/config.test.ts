import { ConfigError, loadConfig } from "../../config";
import { CHANNELS } from "../../services/notifier/transports";

describe("loadConfig", () => {
	it("has the contract's defaults with nothing set", () => {
		const c = loadConfig({}, CHANNELS);
		expect(c).toMatchObject({
			port: 3000,
			databaseUrl: "postgres://postgres@127.0.0.1:5432/dopamine",
			redisUrl: null,
			transporter: null,
			namespace: "",
			services: null,
			metricsPort: 3030,
			claimRatePerSecond: 5,
			loginFailuresPerMinutePerLoginId: 5,
			loginFailuresPerMinutePerAddress: 100,
			requestTimeoutMs: 5000,
			slotTtlSeconds: 1800,
			slotReminderBeforeSeconds: 300,
			agendaBackend: "postgres",
			jwtSecretGenerated: true,
		});
		expect(c.jwtSecret.length).toBeGreaterThanOrEqual(32);
		expect(c.heartbeatTimeoutSeconds).toBeLessThanOrEqual(10);
	});

	it("requires JWT_SECRET when a transporter is set", () => {
		expect(() => loadConfig({ TRANSPORTER: "nats://127.0.0.1:4222" }, CHANNELS)).toThrow(ConfigError);
		expect(() => loadConfig({ TRANSPORTER: "nats://127.0.0.1:4222" }, CHANNELS)).toThrow(/JWT_SECRET is required/);
		expect(loadConfig({ TRANSPORTER: "nats://u:p@127.0.0.1:4222", JWT_SECRET: "x".repeat(32) }, CHANNELS).jwtSecretGenerated).toBe(false);
	});

	it("has limits on the account routes and trusts no proxy by default; parses their settings", () => {
		expect(loadConfig({}, CHANNELS)).toMatchObject({
			signupsPerHour: { perEmail: 5, perAddress: 100 },
			passwordForgotPerHour: { perEmail: 5, perAddress: 30 },
			passwordResetsPerHourPerAddress: 30,
			trustedProxies: [],
		});
		expect(loadConfig({ SIGNUPS_PER_HOUR: "2", PASSWORD_FORGOT_PER_HOUR: "3,9", TRUSTED_PROXIES: "loopback, 10.0.0.0/8" }, CHANNELS)).toMatchObject({
			signupsPerHour: { perEmail: 2, perAddress: 100 },
			passwordForgotPerHour: { perEmail: 3, perAddress: 9 },
			trustedProxies: ["loopback", "10.0.0.0/8"],
		});
	});

	it("parses lists and pairs", () => {
		const c = loadConfig({ SERVICES: " api, users ,", LOGIN_FAILURES_PER_MINUTE: "3,50" }, CHANNELS);
		expect(c.services).toEqual(["api", "users"]);
		expect(c.loginFailuresPerMinutePerLoginId).toBe(3);
		expect(c.loginFailuresPerMinutePerAddress).toBe(50);
	});

	it.each([
		[{ PORT: "eighty" }, /PORT must be a whole number/],
		[{ CLAIM_RATE_PER_SECOND: "0" }, /at least 1/],
		[{ LOGIN_FAILURES_PER_MINUTE: "5,x" }, /LOGIN_FAILURES_PER_MINUTE/],
		[{ JWT_SECRET: "short" }, /at least 32 bytes/],
		[{ JWT_SECRET: "x".repeat(31) }, /at least 32 bytes/],
		[{ NODE_SECRET: "n".repeat(31) }, /NODE_SECRET must be at least 32 bytes/],
		[{ JWT_SECRET: "s".repeat(40), NODE_SECRET: "s".repeat(40) }, /NODE_SECRET must differ from JWT_SECRET/],
		[{ ADMIN_LOGIN_ID: "root" }, /must be set together/],
		[{ AGENDA_BACKEND: "mongo" }, /MONGO_URL/],
		[{ AGENDA_BACKEND: "redis" }, /AGENDA_BACKEND/],
		[{ SLOT_TTL_SECONDS: "60", SLOT_REMINDER_BEFORE_SECONDS: "60" }, /less than SLOT_TTL_SECONDS/],
		[{ TRUSTED_PROXIES: "10.0.0.0/8, my-proxy" }, /TRUSTED_PROXIES/],
		[{ SIGNUPS_PER_HOUR: "0" }, /SIGNUPS_PER_HOUR/],
		[{ PASSWORD_FORGOT_PER_HOUR: "1,2,3" }, /PASSWORD_FORGOT_PER_HOUR/],
		[{ PASSWORD_RESETS_PER_HOUR: "0" }, /PASSWORD_RESETS_PER_HOUR/],
	])("rejects %j", (env, message) => {
		expect(() => loadConfig(env, CHANNELS)).toThrow(message);
	});
});

describe("NODE_SECRET (issue 22)", () => {
	it("is taken as given, or derived from JWT_SECRET (never equal to it, the same on every node)", () => {
		const given = loadConfig({ JWT_SECRET: "j".repeat(40), NODE_SECRET: "n".repeat(40) }, CHANNELS);
		expect([given.nodeSecret, given.nodeSecretDerived]).toEqual(["n".repeat(40), false]);
		const a = loadConfig({ JWT_SECRET: "j".repeat(40) }, CHANNELS);
		const b = loadConfig({ JWT_SECRET: "j".repeat(40) }, CHANNELS);
		expect(a.nodeSecretDerived).toBe(true);
		expect(a.nodeSecret).toBe(b.nodeSecret);
		expect(a.nodeSecret).not.toBe(a.jwtSecret);
		expect(loadConfig({ JWT_SECRET: "k".repeat(40) }, CHANNELS).nodeSecret).not.toBe(a.nodeSecret);
	});
});

describe("send rates against the notifier's lease", () => {
	it("checks only the channels this node sends on", () => {
		expect(() => loadConfig({ NOTIFIER_LEASE_MS: "3000" }, CHANNELS)).not.toThrow();
		expect(() => loadConfig({ NOTIFIER_LEASE_MS: "3000", SMTP_URL: "smtp://127.0.0.1:2525" }, CHANNELS)).toThrow(/NOTIFIER_EMAIL_PER_MINUTE 30 is too slow/);
		expect(() => loadConfig({ NOTIFIER_LEASE_MS: "3000", SMTP_URL: "smtp://127.0.0.1:2525", NOTIFIER_EMAIL_PER_MINUTE: "0" }, CHANNELS)).not.toThrow();
		expect(() => loadConfig({ NOTIFIER_LEASE_MS: "3000", DISCORD_WEBHOOK_URL: "http://127.0.0.1:9/hook" }, CHANNELS)).toThrow(/NOTIFIER_DISCORD_PER_MINUTE 30 is too slow/);
	});
});
