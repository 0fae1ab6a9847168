import os from "node:os";
import proxyaddr from "proxy-addr";
import { isOneEmail } from "../lib/validation";

/** Every setting the store reads from the environment, parsed and checked once. */
export interface Config {
	port: number;
	databaseUrl: string;
	/** Connections of this node's one store pool (TypeORM, shared by every service on the node). */
	dbPoolSize: number;
	/**
	 * A URL where a connection is a session (PostgreSQL itself, or PgBouncer in session mode):
	 * DATABASE_SESSION_URL, else DATABASE_URL. Agenda (LISTEN/NOTIFY, advisory lock) and the
	 * migrations (advisory lock) use it; DATABASE_URL may then be a PgBouncer in transaction mode.
	 */
	sessionDatabaseUrl: string;
	/** Connections of each Agenda pool (one per service that schedules jobs: slots, notifier). */
	agendaPoolSize: number;
	redisUrl: string | null;
	/** TRANSPORTER with any credentials taken out (safe to log); null = single process, no NATS. */
	transporter: string | null;
	/** How every NATS connection of this node connects (Moleculer's transporter, the channels adapter). */
	nats: NatsConnection | null;
	nodeId: string;
	namespace: string;
	/** Services this node runs; `null` means all of them. */
	services: string[] | null;
	jwtSecret: string;
	/** True when no JWT_SECRET was given and one was generated for this process. */
	jwtSecretGenerated: boolean;
	/** STORE_TIME_ZONE: the IANA zone the store's sale times are set in (the admin's "next 10:00"). */
	storeTimeZone: string;
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
	/**
	 * How long a stopping gateway keeps serving while its /api/health already says 503, so a load
	 * balancer takes it out before it refuses anything (GATEWAY_DRAIN_MS; 0 = close at once).
	 */
	gatewayDrainMs: number;
	/** How long a public product read (list, one product) is served from the cache; 0 = never cached. */
	productCacheTtlSeconds: number;
	heartbeatIntervalSeconds: number;
	heartbeatTimeoutSeconds: number;
	admin: { loginId: string; password: string; email: string } | null;
	slotTtlSeconds: number;
	slotReminderBeforeSeconds: number;
	/** NOTIFY_ME_BEFORE_SECONDS: how long before a sale opens a waiting buyer's "notify me" e-mail goes out. */
	notifyMeBeforeSeconds: number;
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
	/**
	 * The notification channels, in the transports' registry's order, with what this node's
	 * environment says of each (its own variables, its pace, whether it is configured).
	 */
	channels: readonly ChannelConfig[];
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
		/** Copies of the notifications stream on a NATS cluster (3 on three servers: one may die with no message lost). */
		streamReplicas: number;
	};
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

/** A channel's own settings, by the names its spec gives them; null = its variable is unset. */
export type ChannelSettings = Readonly<Record<string, string | null>>;

/** A send rate (token bucket, per notifier node): tokens a minute, and how many back to back; 0 a minute = no limit. */
export interface Pace {
	perMinute: number;
	burst: number;
}

/**
 * What config/ reads for one notification channel. Each transport file of the notifier
 * (services/notifier/transports/) declares its own, and the transports' registry hands the list to
 * loadConfig: so a channel's variables are written once, in its transport file, and are still
 * read, checked and typed here with every other variable (config/ imports no service).
 */
export interface ChannelSpec {
	/** The channel's name in messages, the delivery log and metrics; NOTIFIER_<NAME>_PER_MINUTE/_BURST set its pace. */
	readonly name: string;
	/** The channel's own variables, by setting: e.g. Slack's `{ webhookUrl: ... }` read from its webhook URL variable. */
	readonly env: Readonly<Record<string, string>>;
	/** Its default pace; absent = never paced. */
	readonly pace?: Pace;
	/** Takes the operators' messages: channel `operators` fans out to every configured one. */
	readonly operators?: boolean;
	/** True when these settings send the channel to its provider on this node (it is paced only then). */
	configured(settings: ChannelSettings): boolean;
}

/** One channel as this node's environment configures it. */
export interface ChannelConfig {
	readonly name: string;
	/** Its variables' names, for messages that say what to set. */
	readonly variables: readonly string[];
	readonly settings: ChannelSettings;
	readonly operators: boolean;
	readonly configured: boolean;
	/** Null when the channel is never paced, or its rate is 0 (no limit). */
	readonly pace: Pace | null;
}

/** One NATS login for every connection a node opens. */
export interface NatsConnection {
	/** host:port of each server of TRANSPORTER, in order (nats.js tries them all). */
	servers: string[];
	/** Absent only with NATS_ALLOW_ANONYMOUS=true. */
	user?: string;
	pass?: string;
}

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

/**
 * Each channel's own variables and its pace, NOTIFIER_<NAME>_PER_MINUTE and _BURST (the default
 * paces, and why, are in each transport file). A try waits for its token while it holds its lease,
 * so on a configured channel the slowest wait must end well inside it.
 */
function channelsOf(env: Env, specs: readonly ChannelSpec[]): ChannelConfig[] {
	const concurrency = int(env, "NOTIFIER_CONCURRENCY", 8, 1);
	const leaseMs = int(env, "NOTIFIER_LEASE_MS", 2 * 60_000, 1000);
	return specs.map(spec => {
		const settings = Object.fromEntries(Object.entries(spec.env).map(([setting, key]) => [setting, text(env, key)]));
		const configured = spec.configured(settings);
		const key = spec.name.toUpperCase();
		const pace = spec.pace && {
			perMinute: int(env, `NOTIFIER_${key}_PER_MINUTE`, spec.pace.perMinute),
			burst: int(env, `NOTIFIER_${key}_BURST`, spec.pace.burst, 1),
		};
		// Only channels this node will send on: an unconfigured one never waits for a token.
		if (configured && pace && pace.perMinute > 0 && (concurrency / pace.perMinute) * 60_000 > leaseMs / 2)
			throw new ConfigError(
				`NOTIFIER_${key}_PER_MINUTE ${pace.perMinute} is too slow for NOTIFIER_CONCURRENCY ${concurrency}: a try would wait past half its lease (NOTIFIER_LEASE_MS ${leaseMs})`
			);
		return { name: spec.name, variables: Object.values(spec.env), settings, operators: spec.operators === true, configured, pace: pace && pace.perMinute > 0 ? pace : null };
	});
}

/** The named channel's configuration on this node (undefined for a name no transport has). */
export const channelOf = (config: Pick<Config, "channels">, name: string): ChannelConfig | undefined => config.channels.find(c => c.name === name);

/** The operators' channels this node's environment configures, in the registry's order. */
export const operatorChannels = (config: Pick<Config, "channels">): string[] => config.channels.filter(c => c.operators && c.configured).map(c => c.name);

/** The variables that configure an operators' channel, for messages that say what to set. */
export const operatorVariables = (config: Pick<Config, "channels">): string => config.channels.filter(c => c.operators).flatMap(c => c.variables).join(", ");

/** True when e-mail stays in the local mailbox (no SMTP_URL): admins read it in the delivery log. */
export const mailboxOnly = (config: Pick<Config, "channels">): boolean => !channelOf(config, "email")?.configured;

/** STORE_TIME_ZONE, default Asia/Seoul (the store sells at 10:00 KST); a zone Intl does not know is refused. */
function timeZone(env: Env): string {
	const zone = text(env, "STORE_TIME_ZONE") ?? "Asia/Seoul";
	try {
		new Intl.DateTimeFormat("en-US", { timeZone: zone });
	} catch {
		throw new ConfigError(`STORE_TIME_ZONE must be an IANA time zone such as Asia/Seoul or UTC, got "${zone}"`);
	}
	return zone;
}

/**
 * TRANSPORTER is "nats://host:4222" or several such URLs, comma-separated, each optionally with
 * "user:pass@". The login comes from the URLs, else NATS_USER with NATS_PASSWORD or
 * NATS_PASSWORD_FILE (a file holding the password, as Docker and systemd hand secrets over). A
 * node without one refuses to start: a NATS that accepts anyone lets anyone call any action
 * (users.setRole). NATS_ALLOW_ANONYMOUS=true is the explicit way out, for a private NATS on
 * loopback (the tests' shared server, `npm start` with a local nats-server).
 */
function natsConnection(env: Env, transporter: string): { nats: NatsConnection; safeUrl: string } {
	const servers: string[] = [];
	let user: string | undefined;
	let pass: string | undefined;
	for (const raw of transporter.split(",").map(s => s.trim()).filter(Boolean)) {
		let url: URL;
		try {
			url = new URL(raw.includes("://") ? raw : `nats://${raw}`);
		} catch {
			throw new ConfigError(`TRANSPORTER must be nats://[user:password@]host:port[,...], got a part that is not a URL`);
		}
		if (url.protocol !== "nats:" && url.protocol !== "tls:")
			throw new ConfigError(`TRANSPORTER must use nats:// URLs, got "${url.protocol}//"`);
		if (!url.hostname) throw new ConfigError("TRANSPORTER has a URL without a host");
		servers.push(url.host);
		if (url.username) {
			const u = decodeURIComponent(url.username);
			const p = decodeURIComponent(url.password);
			if (user !== undefined && (u !== user || p !== pass))
				throw new ConfigError("TRANSPORTER's URLs carry different credentials: one login serves every server of a NATS cluster");
			user = u;
			pass = p;
		}
	}
	if (servers.length === 0) throw new ConfigError("TRANSPORTER names no server");
	if (user === undefined) {
		user = text(env, "NATS_USER") ?? undefined;
		const file = text(env, "NATS_PASSWORD_FILE");
		if (file) {
			try {
				pass = require("node:fs").readFileSync(file, "utf8").trim();
			} catch (err) {
				throw new ConfigError(`NATS_PASSWORD_FILE cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
			}
		} else pass = env.NATS_PASSWORD ?? undefined;
		if (user !== undefined && !pass) throw new ConfigError("NATS_USER is set without NATS_PASSWORD or NATS_PASSWORD_FILE");
		if (user === undefined && pass) throw new ConfigError("NATS_PASSWORD is set without NATS_USER");
	}
	if (user === undefined && text(env, "NATS_ALLOW_ANONYMOUS") !== "true")
		throw new ConfigError(
			"TRANSPORTER is set but no NATS credentials are: put them in TRANSPORTER (nats://user:password@host:4222) " +
				"or set NATS_USER with NATS_PASSWORD or NATS_PASSWORD_FILE. " +
				"Only for a private NATS that nobody else can reach, set NATS_ALLOW_ANONYMOUS=true."
		);
	return { nats: { servers, user, pass }, safeUrl: servers.map(s => `nats://${s}`).join(",") };
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

/**
 * `channels`: the notification channels' specs, from the transports' registry
 * (services/notifier/transports/index.ts), which the composition root (server.ts) passes. No
 * default: a configuration loaded without them would have no channel (e-mail kept in the local
 * mailbox, SMTP_URL unread), so every caller says which channels it knows.
 */
export function loadConfig(env: Env, channels: readonly ChannelSpec[]): Config {
	const transporterGiven = text(env, "TRANSPORTER");
	const givenSecret = text(env, "JWT_SECRET");
	if (transporterGiven && !givenSecret)
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
	const databaseUrl = text(env, "DATABASE_URL") ?? "postgres://postgres@127.0.0.1:5432/dopamine";
	const natsLogin = transporterGiven ? natsConnection(env, transporterGiven) : null;
	const transporter = natsLogin?.safeUrl ?? null;
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
		databaseUrl,
		// 20 worker nodes at 5 + 2 × 3 would be 220 connections: a cluster puts PgBouncer between
		// (docs/cluster.md); 5 is still enough for one node's grant writes, which are batched.
		dbPoolSize: int(env, "DB_POOL_SIZE", 5, 1),
		sessionDatabaseUrl: text(env, "DATABASE_SESSION_URL") ?? databaseUrl,
		// 3 at least: one for Agenda's LISTEN, one for the schema lock held while it starts, one to query.
		agendaPoolSize: int(env, "AGENDA_POOL_SIZE", 3, 3),
		redisUrl: text(env, "REDIS_URL"),
		transporter,
		nats: natsLogin?.nats ?? null,
		nodeId: text(env, "NODE_ID") ?? `${os.hostname()}-${process.pid}`,
		namespace: text(env, "NAMESPACE") ?? "",
		services: services ? services.split(",").map(s => s.trim()).filter(Boolean) : null,
		jwtSecret,
		jwtSecretGenerated: !givenSecret,
		storeTimeZone: timeZone(env),
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
		gatewayDrainMs: int(env, "GATEWAY_DRAIN_MS", 0),
		productCacheTtlSeconds: int(env, "PRODUCT_CACHE_TTL_SECONDS", 1),
		heartbeatIntervalSeconds: int(env, "HEARTBEAT_INTERVAL_SECONDS", 1, 1),
		heartbeatTimeoutSeconds: int(env, "HEARTBEAT_TIMEOUT_SECONDS", 4, 2),
		admin: adminLogin && adminPassword && adminEmail
			? { loginId: adminLogin, password: adminPassword, email: adminEmail }
			: null,
		slotTtlSeconds: ttl,
		slotReminderBeforeSeconds: reminder,
		notifyMeBeforeSeconds: int(env, "NOTIFY_ME_BEFORE_SECONDS", 600),
		paymentLatencyMs: int(env, "PAYMENT_LATENCY_MS", 50),
		slotSweepIntervalMs: int(env, "SLOT_SWEEP_INTERVAL_MS", 5000, 50),
		allocatorQueueLimit: int(env, "ALLOCATOR_QUEUE_LIMIT", 20_000, 1),
		allocatorBatchMax: int(env, "ALLOCATOR_BATCH_MAX", 256, 1),
		allocatorBatchWindowMs: int(env, "ALLOCATOR_BATCH_WINDOW_MS", 1),
		soldOutLeaseMs: int(env, "SOLD_OUT_LEASE_MS", 2000, 100),
		allocatorIdleReleaseMs: int(env, "ALLOCATOR_IDLE_RELEASE_MS", 5 * 60_000, 100),
		channels: channelsOf(env, channels),
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
			streamReplicas: int(env, "NOTIFY_STREAM_REPLICAS", 1, 1),
		},
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
