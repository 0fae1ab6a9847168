import type { BrokerOptions, Errors } from "moleculer";
import type { Config } from "./config";
import { StorePrometheusReporter } from "./lib/metrics-reporter";
import { LocalFirstStrategy } from "./lib/strategies";

/**
 * Broker options, built from the typed config. Timeouts are short on purpose: a node killed
 * mid-sale must be noticed in seconds (heartbeat), and a call to it must fail fast (request
 * timeout) so the caller can go to the next owner.
 */
export function brokerOptions(config: Config): BrokerOptions {
	return {
		namespace: config.namespace,
		nodeID: config.nodeId,
		logger: { type: "Console", options: { formatter: "short", colors: false, moduleColors: false } },
		logLevel: config.logLevel as BrokerOptions["logLevel"],

		transporter: config.transporter
			? { type: "NATS", options: { url: config.transporter, maxReconnectAttempts: -1 } }
			: null,
		serializer: "JSON",

		requestTimeout: config.requestTimeoutMs,
		retryPolicy: {
			enabled: true,
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
			// Only the node's own failures open its breaker: a SOLD_OUT is an answer, and BUSY is load
			// (opening on it would push a hot product's load onto the next node).
			check: (err: Error) => {
				const { code, type } = err as Errors.MoleculerError;
				return (typeof code !== "number" || code >= 500) && type !== "BUSY";
			},
		},
		bulkhead: { enabled: false },

		validator: true,
		metrics: {
			enabled: true,
			reporter: [new StorePrometheusReporter({ port: config.metricsPort, path: "/metrics" }) as any],
		},
		tracing: { enabled: false },
	};
}

export default brokerOptions;
