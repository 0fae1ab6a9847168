import { ConfigError, loadConfig } from "../config";

describe("loadConfig", () => {
	it("has the contract's defaults with nothing set", () => {
		const c = loadConfig({});
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
		expect(() => loadConfig({ TRANSPORTER: "nats://127.0.0.1:4222" })).toThrow(ConfigError);
		expect(() => loadConfig({ TRANSPORTER: "nats://127.0.0.1:4222" })).toThrow(/JWT_SECRET is required/);
		expect(loadConfig({ TRANSPORTER: "nats://127.0.0.1:4222", JWT_SECRET: "x".repeat(32) }).jwtSecretGenerated).toBe(false);
	});

	it("parses lists and pairs", () => {
		const c = loadConfig({ SERVICES: " api, users ,", LOGIN_FAILURES_PER_MINUTE: "3,50" });
		expect(c.services).toEqual(["api", "users"]);
		expect(c.loginFailuresPerMinutePerLoginId).toBe(3);
		expect(c.loginFailuresPerMinutePerAddress).toBe(50);
	});

	it.each([
		[{ PORT: "eighty" }, /PORT must be a whole number/],
		[{ CLAIM_RATE_PER_SECOND: "0" }, /at least 1/],
		[{ LOGIN_FAILURES_PER_MINUTE: "5,x" }, /LOGIN_FAILURES_PER_MINUTE/],
		[{ JWT_SECRET: "short" }, /at least 16/],
		[{ ADMIN_LOGIN_ID: "root" }, /must be set together/],
		[{ AGENDA_BACKEND: "mongo" }, /MONGO_URL/],
		[{ AGENDA_BACKEND: "redis" }, /AGENDA_BACKEND/],
		[{ SLOT_TTL_SECONDS: "60", SLOT_REMINDER_BEFORE_SECONDS: "60" }, /less than SLOT_TTL_SECONDS/],
	])("rejects %j", (env, message) => {
		expect(() => loadConfig(env)).toThrow(message);
	});
});
