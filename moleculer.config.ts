import type { BrokerOptions, Errors } from "moleculer";
import type { Config } from "./config";
import { channelsMiddleware } from "./lib/channels";
import { identityMiddleware } from "./lib/identity";
import { HOST_DETAILS, StorePrometheusReporter } from "./lib/metrics-reporter";
import { LocalFirstStrategy } from "./lib/strategies";
import { TransportWatch } from "./lib/transport-watch";
import { StoreValidator } from "./lib/validation";
import { replCommands } from "./repl";

/** 5xx types that are the store's deliberate answers, not signs of a broken endpoint. */
const STORE_ANSWERS = new Set(["BUSY", "UNAVAILABLE", "MOVED"]);

/**
 * Per process, in memory: a product read is small, a second's TTL bounds what each node keeps, and
 * a cache in the process has no outage of its own (a Redis cacher would add a hop and a failure
 * mode to every page load for no gain at this TTL). Every products node cleans its own on a change.
 */
function cacherOptions(config: Config): BrokerOptions["cacher"] {
	if (config.productCacheTtlSeconds <= 0) return undefined;
	return { type: "Memory", options: { ttl: config.productCacheTtlSeconds } };
}

/** nats.js tries to reconnect this often (its default is 2 s): grants resume soon after NATS is back. */
const NATS_RECONNECT_WAIT_MS = 500;

/**
 * Broker options, built from the typed config. Timeouts are short on purpose: a node killed
 * mid-sale must be noticed in seconds (heartbeat), and a call to it must fail fast (request
 * timeout) so the caller can go to the next owner.
 */
export function brokerOptions(config: Config): BrokerOptions {
	// A call that failed for want of NATS, up to a heartbeat timeout and a request timeout after this
	// node got it back (and a few reconnect waits of the node it called), is the outage's.
	const transport = new TransportWatch(config.heartbeatTimeoutSeconds * 1000 + config.requestTimeoutMs + 4 * NATS_RECONNECT_WAIT_MS);
	return {
		namespace: config.namespace,
		nodeID: config.nodeId,
		logger: { type: "Console", options: { formatter: "short", colors: false, moduleColors: false } },
		logLevel: config.logLevel as BrokerOptions["logLevel"],

		// servers/user/pass rather than `url`: the login is given once, whether it came in TRANSPORTER or NATS_USER.
		transporter: config.nats
			? { type: "NATS", options: { ...config.nats, maxReconnectAttempts: -1, reconnectTimeWait: NATS_RECONNECT_WAIT_MS } }
			: null,
		serializer: "JSON",

		requestTimeout: config.requestTimeoutMs,
		// Product pages at 10:00:00: a hundred thousand buyers load the same product at once. Public
		// product reads are cached for a second (in each process),
		// so PostgreSQL serves one read per product per second instead of one per page, and its time goes to
		// commits. A product change cleans the cache; `remaining` lags the sale by at most the TTL.
		cacher: cacherOptions(config),
		// Retries are opt-in per action (`retryPolicy: { enabled: true }`): a call that timed out may
		// still be running, so only what is safe to run twice is retried (reads, and a claim, which
		// answers ALREADY_HOLDING the second time). Creating a product, signing up or confirming a
		// payment is never run again by the broker.
		retryPolicy: {
			enabled: false,
			retries: 2,
			delay: 50,
			maxDelay: 500,
			factor: 2,
			check: (err: Error) => !!(err as Errors.MoleculerError).retryable,
		},
		heartbeatInterval: config.heartbeatIntervalSeconds,
		heartbeatTimeout: config.heartbeatTimeoutSeconds,
		contextParamsCloning: false,
		maxCallLevel: 20,

		// preferLocal would bypass the allocator's placement when a caller hosts an allocator too;
		// LocalFirst keeps "local if there is one" for every other service.
		registry: { strategy: LocalFirstStrategy, preferLocal: false },
		circuitBreaker: {
			enabled: true,
			threshold: 0.5,
			minRequestCount: 20,
			windowTime: 10,
			halfOpenTime: 5_000,
			// Only a broken endpoint opens its breaker (a timeout, a crash, a lost connection). The
			// store's own answers do not: a SOLD_OUT is an answer, BUSY is load (opening on it would push
			// a hot product's load onto the next node), UNAVAILABLE is a database fault every node shares
			// (opening on it would move products around for nothing), MOVED is a hand-over in progress.
			// Nor does a call lost while this node's own NATS connection was down: every endpoint shared that.
			check: (err: Error) => {
				const { code, type } = err as Errors.MoleculerError;
				return (typeof code !== "number" || code >= 500) && !STORE_ANSWERS.has(type) && !transport.excuses(err);
			},
		},
		bulkhead: { enabled: false },

		// fastest-validator, plus: no string anywhere in any params may hold a control character.
		validator: new StoreValidator(),
		metrics: {
			enabled: true,
			// No host details (hostname, OS user, addresses, MAC...); the listener on METRICS_HOST only.
			reporter: [new StorePrometheusReporter({ port: config.metricsPort, host: config.metricsHost, token: config.metricsToken, path: "/metrics", excludes: HOST_DETAILS }) as any],
		},
		tracing: { enabled: false },
		// The notifier's durable channel (JetStream with a TRANSPORTER): any node may publish to it.
		// identityMiddleware: each action's declared `auth` ("user" | "admin") checked against the signed
		// identity in meta (lib/identity.ts): a node on NATS is not a user.
		middlewares: [identityMiddleware(config), channelsMiddleware(config), transport.middleware()],

		// The operators' commands (repl/), beside Moleculer's own.
		replCommands: replCommands as BrokerOptions["replCommands"],
	};
}

export default brokerOptions;
