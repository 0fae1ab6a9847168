import os from "node:os";
import proxyaddr from "proxy-addr";
import { isOneEmail } from "../lib/validation";

/** Every setting the store reads from the environment, parsed and checked once. */
export interface Config {
	port: number;
	databaseUrl: string;
	redisUrl: string | null;
	transporter: string | null;
	nodeId: string;
	namespace: string;
	/** Services this node runs; `null` means all of them. */
	services: string[] | null;
	jwtSecret: string;
	/** True when no JWT_SECRET was given and one was generated for this process. */
	jwtSecretGenerated: boolean;
	jwtExpiresInSeconds: number;
	/**
	 * The nodes' own secret: signs the identity a gateway (or the REPL) hands the services in
	 * `meta.identity`, and the allocator's sold-out flags (lib/identity.ts). NODE_SECRET, or derived
	 * from JWT_SECRET when unset (every node already holds that one).
	 */
	nodeSecret: string;
	/** True when NODE_SECRET was not given and the secret is derived from JWT_SECRET. */
	nodeSecretDerived: boolean;
	metricsPort: number;
	/** Address the metrics listener binds (METRICS_HOST): loopback unless told otherwise. */
	metricsHost: string;
	/** When set, /metrics (gateway and listener) answers only `Authorization: Bearer <token>`. */
	metricsToken: string | null;
	claimRatePerSecond: number;
	/** Failed logins per minute for one login id from one client address (the strict limit). */
	loginFailuresPerMinutePerLoginId: number;
	loginFailuresPerMinutePerAddress: number;
	/**
	 * Failed logins per minute for one login id from all addresses together: a ceiling far above the
	 * strict limit, so that nobody can lock an account (the admin's) out from addresses of their own.
	 */
	loginFailuresPerMinutePerIdCeiling: number;
	/** Sign-ups per hour: per e-mail address, per client address. */
	signupsPerHour: { perEmail: number; perAddress: number };
	/** Forgot-password requests per hour: per e-mail address, per client address. */
	passwordForgotPerHour: { perEmail: number; perAddress: number };
	/** Password resets (valid token or not) per hour, per client address. */
	passwordResetsPerHourPerAddress: number;
	/** Proxies whose X-Forwarded-For is believed (proxy-addr syntax: addresses, CIDRs, loopback...); empty = none. */
	trustedProxies: string[];
	requestTimeoutMs: number;
	/** How long a public product read (list, one product) is served from the cache; 0 = never cached. */
	productCacheTtlSeconds: number;
	heartbeatIntervalSeconds: number;
	heartbeatTimeoutSeconds: number;
	admin: { loginId: string; password: string; email: string } | null;
	slotTtlSeconds: number;
	slotReminderBeforeSeconds: number;
	/** Simulated payment gateway latency. */
	paymentLatencyMs: number;
	/** How often each `slots` node looks for HELD slots past their expiry (the safety net). */
	slotSweepIntervalMs: number;
	/** Claims one product's actor holds before answering 503 BUSY. */
	allocatorQueueLimit: number;
	/** Group commit: most grants per transaction, and how long a batch waits to fill. */
	allocatorBatchMax: number;
	allocatorBatchWindowMs: number;
	/** How long a gateway answers SOLD_OUT from a flag it has not heard renewed. */
	soldOutLeaseMs: number;
	/** A product's actor with no claim for this long is released (its state is in PostgreSQL). */
	allocatorIdleReleaseMs: number;
	smtpUrl: string | null;
	mailFrom: string;
	/** Language of buyers' (and operators') messages: users have no locale of their own yet. */
	locale: "ko" | "en";
	notifier: {
		/** Deliveries one notifier node sends at once (and SMTP connections it keeps). */
		concurrency: number;
		/** Tries before a delivery is FAILED. */
		maxAttempts: number;
		/** Exponential backoff between tries: base * 2^(try-1), capped, with jitter. */
		backoffBaseMs: number;
		backoffMaxMs: number;
		/** How often each notifier looks for due deliveries (it is also woken by its intake). */
		pollMs: number;
		/** A delivery taken by a node that died is taken again after this long. */
		leaseMs: number;
		/** Finished deliveries (and the stream's messages) are kept this long. */
		retentionDays: number;
		/** Messages the intake takes from the channel at once (JetStream max_ack_pending). */
		maxInFlight: number;
	};
	slackWebhookUrl: string | null;
	discordWebhookUrl: string | null;
	agendaBackend: "postgres" | "mongo";
	/** How often Agenda polls for due jobs (it is also woken by LISTEN/NOTIFY on PostgreSQL). */
	agendaProcessEveryMs: number;
	/** How long a running job keeps its lock before another node may take it. */
	agendaLockLifetimeMs: number;
	mongoUrl: string | null;
	/** Public base URL used in links that go out in messages (password reset). */
	publicUrl: string;
	bodyLimit: string;
	logLevel: string;
	/** Address the gateway listens on. */
	host: string;
	/** The gateway's own HTTP server: slow or greedy clients are cut (issue 22, point 10). */
	http: {
		/** A request's headers must arrive within this (HTTP_HEADERS_TIMEOUT_MS). */
		headersTimeoutMs: number;
		/** A whole request (headers and body) must arrive within this (HTTP_REQUEST_TIMEOUT_MS). */
		requestTimeoutMs: number;
		/** Open connections one gateway accepts; beyond, new ones are closed at once (HTTP_MAX_CONNECTIONS). */
		maxConnections: number;
		/** Request headers kept per request (HTTP_MAX_HEADERS); the header block is also bounded to 16 KiB (431). */
		maxHeaders: number;
	};
}

export class ConfigError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "ConfigError";
	}
}

type Env = Record<string, string | undefined>;

function text(env: Env, key: string): string | null {
	const v = env[key];
	return v === undefined || v.trim() === "" ? null : v.trim();
}

function int(env: Env, key: string, fallback: number, min = 0): number {
	const raw = text(env, key);
	if (raw === null) return fallback;
	if (!/^\d+$/.test(raw)) throw new ConfigError(`${key} must be a whole number, got "${raw}"`);
	const n = Number(raw);
	if (n < min) throw new ConfigError(`${key} must be at least ${min}, got ${n}`);
	return n;
}

/**
 * LOGIN_FAILURES_PER_MINUTE is "5" (per login id) or "5,100" (per login id, per address);
 * LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS overrides the second number.
 */
function loginLimits(env: Env): [number, number] {
	const [perId, perAddress] = limitPair(env, "LOGIN_FAILURES_PER_MINUTE", [5, 100], "per login id, per address");
	return [perId, int(env, "LOGIN_FAILURES_PER_MINUTE_PER_ADDRESS", perAddress, 1)];
}

function localeOf(env: Env): "ko" | "en" {
	const raw = (text(env, "LOCALE") ?? "ko").toLowerCase();
	if (raw !== "ko" && raw !== "en") throw new ConfigError(`LOCALE must be "ko" or "en", got "${raw}"`);
	return raw;
}

/** A limit written "N" or "N,M" (positive), with a default for either number; `words` name the two in the error. */
function limitPair(env: Env, key: string, defaults: [number, number], words: string): [number, number] {
	const raw = text(env, key);
	if (raw === null) return defaults;
	const parts = raw.split(",").map(s => s.trim());
	if (parts.length > 2 || parts.some(p => !/^\d+$/.test(p) || Number(p) < 1))
		throw new ConfigError(`${key} must be "N" or "N,M" (positive: ${words}), got "${raw}"`);
	return [Number(parts[0]), parts[1] === undefined ? defaults[1] : Number(parts[1])];
}

/** "N,M" (per e-mail, per client address) with defaults for either. */
function perEmailAndAddress(env: Env, key: string, perEmail: number, perAddress: number): { perEmail: number; perAddress: number } {
	const [e, a] = limitPair(env, key, [perEmail, perAddress], "per e-mail, per address");
	return { perEmail: e, perAddress: a };
}

/** TRUSTED_PROXIES: comma list of addresses, CIDR ranges or proxy-addr's names (loopback, linklocal, uniquelocal). */
function trustedProxies(env: Env): string[] {
	const list = (text(env, "TRUSTED_PROXIES") ?? "").split(",").map(s => s.trim()).filter(Boolean);
	try {
		proxyaddr.compile(list);
	} catch (err) {
		throw new ConfigError(`TRUSTED_PROXIES must list addresses, CIDR ranges or loopback/linklocal/uniquelocal: ${(err as Error).message}`);
	}
	return list;
}

function httpLimits(env: Env): Config["http"] {
	const headersTimeoutMs = int(env, "HTTP_HEADERS_TIMEOUT_MS", 10_000, 100);
	const requestTimeoutMs = int(env, "HTTP_REQUEST_TIMEOUT_MS", 30_000, 100);
	if (headersTimeoutMs > requestTimeoutMs) throw new ConfigError("HTTP_HEADERS_TIMEOUT_MS must not be more than HTTP_REQUEST_TIMEOUT_MS");
	return { headersTimeoutMs, requestTimeoutMs, maxConnections: int(env, "HTTP_MAX_CONNECTIONS", 20_000, 1), maxHeaders: int(env, "HTTP_MAX_HEADERS", 100, 1) };
}

function metricsToken(env: Env): string | null {
	const t = text(env, "METRICS_TOKEN");
	if (t !== null && t.length < 16) throw new ConfigError("METRICS_TOKEN must be at least 16 characters");
	return t;
}

function generatedSecret(): string {
	// Random per start: tokens from an earlier run stop working, which is right for a demo node.
	return require("node:crypto").randomBytes(32).toString("base64url");
}

/**
 * With no NODE_SECRET, the node secret is derived from JWT_SECRET (one-way, and labelled, so the
 * two keys never sign the same bytes): every node of a cluster already holds JWT_SECRET, and a
 * single process gets a fresh one per start with it. A separate NODE_SECRET keeps the key that
 * mints buyers' tokens off nodes that do not need it, so it is what a cluster should set.
 */
function derivedNodeSecret(jwtSecret: string): string {
	return require("node:crypto").createHmac("sha256", jwtSecret).update("dopamine node identity v1").digest("base64url");
}

export function loadConfig(env: Env = process.env): Config {
	const transporter = text(env, "TRANSPORTER");
	const givenSecret = text(env, "JWT_SECRET");
	if (transporter && !givenSecret)
		throw new ConfigError(
			"JWT_SECRET is required when TRANSPORTER is set: every node of a cluster must verify the same tokens"
		);
	// HS256's key: at least the hash's own 32 bytes (RFC 7518 §3.2), e.g. openssl rand -hex 32.
	if (givenSecret && Buffer.byteLength(givenSecret, "utf8") < 32)
		throw new ConfigError("JWT_SECRET must be at least 32 bytes (e.g. openssl rand -hex 32)");

	const givenNodeSecret = text(env, "NODE_SECRET");
	if (givenNodeSecret && Buffer.byteLength(givenNodeSecret, "utf8") < 32)
		throw new ConfigError("NODE_SECRET must be at least 32 bytes (e.g. openssl rand -hex 32)");
	if (givenNodeSecret && givenSecret && givenNodeSecret === givenSecret)
		throw new ConfigError("NODE_SECRET must differ from JWT_SECRET");
	const jwtSecret = givenSecret ?? generatedSecret();

	const services = text(env, "SERVICES");
	const adminLogin = text(env, "ADMIN_LOGIN_ID");
	const adminPassword = text(env, "ADMIN_PASSWORD");
	const adminEmail = text(env, "ADMIN_EMAIL");
	if ((adminLogin || adminPassword || adminEmail) && !(adminLogin && adminPassword && adminEmail))
		throw new ConfigError("ADMIN_LOGIN_ID, ADMIN_PASSWORD and ADMIN_EMAIL must be set together");
	if (adminEmail && !isOneEmail(adminEmail)) throw new ConfigError("ADMIN_EMAIL must be exactly one e-mail address, such as admin@example.com");

	const agendaBackend = (text(env, "AGENDA_BACKEND") ?? "postgres").toLowerCase();
	if (agendaBackend !== "postgres" && agendaBackend !== "mongo")
		throw new ConfigError(`AGENDA_BACKEND must be "postgres" or "mongo", got "${agendaBackend}"`);
	if (agendaBackend === "mongo" && !text(env, "MONGO_URL"))
		throw new ConfigError("AGENDA_BACKEND=mongo needs MONGO_URL");

	const [perId, perAddress] = loginLimits(env);
	const port = int(env, "PORT", 3000);
	const ttl = int(env, "SLOT_TTL_SECONDS", 1800, 1);
	const reminder = int(env, "SLOT_REMINDER_BEFORE_SECONDS", 300);
	if (reminder >= ttl) throw new ConfigError("SLOT_REMINDER_BEFORE_SECONDS must be less than SLOT_TTL_SECONDS");

	return {
		port,
		databaseUrl: text(env, "DATABASE_URL") ?? "postgres://postgres@127.0.0.1:5432/dopamine",
		redisUrl: text(env, "REDIS_URL"),
		transporter,
		nodeId: text(env, "NODE_ID") ?? `${os.hostname()}-${process.pid}`,
		namespace: text(env, "NAMESPACE") ?? "",
		services: services ? services.split(",").map(s => s.trim()).filter(Boolean) : null,
		jwtSecret,
		jwtSecretGenerated: !givenSecret,
		jwtExpiresInSeconds: int(env, "JWT_EXPIRES_IN_SECONDS", 3600, 1),
		nodeSecret: givenNodeSecret ?? derivedNodeSecret(jwtSecret),
		nodeSecretDerived: !givenNodeSecret,
		metricsPort: int(env, "METRICS_PORT", 3030),
		metricsHost: text(env, "METRICS_HOST") ?? "127.0.0.1",
		metricsToken: metricsToken(env),
		claimRatePerSecond: int(env, "CLAIM_RATE_PER_SECOND", 5, 1),
		loginFailuresPerMinutePerLoginId: perId,
		loginFailuresPerMinutePerAddress: perAddress,
		loginFailuresPerMinutePerIdCeiling: int(env, "LOGIN_FAILURES_PER_MINUTE_PER_ID", Math.max(100, perId), 1),
		signupsPerHour: perEmailAndAddress(env, "SIGNUPS_PER_HOUR", 5, 100),
		passwordForgotPerHour: perEmailAndAddress(env, "PASSWORD_FORGOT_PER_HOUR", 5, 30),
		passwordResetsPerHourPerAddress: int(env, "PASSWORD_RESETS_PER_HOUR", 30, 1),
		trustedProxies: trustedProxies(env),
		requestTimeoutMs: int(env, "REQUEST_TIMEOUT_MS", 5000, 100),
		productCacheTtlSeconds: int(env, "PRODUCT_CACHE_TTL_SECONDS", 1),
		heartbeatIntervalSeconds: int(env, "HEARTBEAT_INTERVAL_SECONDS", 1, 1),
		heartbeatTimeoutSeconds: int(env, "HEARTBEAT_TIMEOUT_SECONDS", 4, 2),
		admin: adminLogin && adminPassword && adminEmail
			? { loginId: adminLogin, password: adminPassword, email: adminEmail }
			: null,
		slotTtlSeconds: ttl,
		slotReminderBeforeSeconds: reminder,
		paymentLatencyMs: int(env, "PAYMENT_LATENCY_MS", 50),
		slotSweepIntervalMs: int(env, "SLOT_SWEEP_INTERVAL_MS", 5000, 50),
		allocatorQueueLimit: int(env, "ALLOCATOR_QUEUE_LIMIT", 20_000, 1),
		allocatorBatchMax: int(env, "ALLOCATOR_BATCH_MAX", 256, 1),
		allocatorBatchWindowMs: int(env, "ALLOCATOR_BATCH_WINDOW_MS", 1),
		soldOutLeaseMs: int(env, "SOLD_OUT_LEASE_MS", 2000, 100),
		allocatorIdleReleaseMs: int(env, "ALLOCATOR_IDLE_RELEASE_MS", 5 * 60_000, 100),
		smtpUrl: text(env, "SMTP_URL"),
		mailFrom: text(env, "MAIL_FROM") ?? "Dopamine Store <no-reply@dopamine.local>",
		locale: localeOf(env),
		notifier: {
			concurrency: int(env, "NOTIFIER_CONCURRENCY", 8, 1),
			maxAttempts: int(env, "NOTIFIER_MAX_ATTEMPTS", 8, 1),
			backoffBaseMs: int(env, "NOTIFIER_BACKOFF_BASE_MS", 2000, 1),
			backoffMaxMs: int(env, "NOTIFIER_BACKOFF_MAX_MS", 10 * 60_000, 1),
			pollMs: int(env, "NOTIFIER_POLL_MS", 1000, 20),
			leaseMs: int(env, "NOTIFIER_LEASE_MS", 2 * 60_000, 1000),
			retentionDays: int(env, "NOTIFIER_RETENTION_DAYS", 30, 1),
			maxInFlight: int(env, "NOTIFIER_MAX_IN_FLIGHT", 100, 1),
		},
		slackWebhookUrl: text(env, "SLACK_WEBHOOK_URL"),
		discordWebhookUrl: text(env, "DISCORD_WEBHOOK_URL"),
		agendaBackend,
		agendaProcessEveryMs: int(env, "AGENDA_PROCESS_EVERY_MS", 5000, 50),
		agendaLockLifetimeMs: int(env, "AGENDA_LOCK_LIFETIME_MS", 10 * 60_000, 100),
		mongoUrl: text(env, "MONGO_URL"),
		publicUrl: (text(env, "PUBLIC_URL") ?? `http://127.0.0.1:${port}`).replace(/\/$/, ""),
		bodyLimit: text(env, "BODY_LIMIT") ?? "16kb",
		logLevel: text(env, "LOG_LEVEL") ?? "info",
		host: text(env, "HOST") ?? "0.0.0.0",
		http: httpLimits(env),
	};
}

/**
 * The configuration each broker was built with. Several brokers can live in one process
 * (tests run a cluster in one jest worker), so config belongs to the broker, not the module.
 */
const byBroker = new WeakMap<object, Config>();

export function bindConfig(broker: object, config: Config): void {
	byBroker.set(broker, config);
}

export function configOf(broker: object): Config {
	const c = byBroker.get(broker);
	if (!c) throw new Error("broker was not created by createBroker(): no configuration bound");
	return c;
}
