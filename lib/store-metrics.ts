import type { ServiceBroker } from "moleculer";

/**
 * Every metric the store registers, beside Moleculer's own: its name, type, labels and help, once.
 * Services, the dashboard's numbers (services/sales/live.ts) and tests use these names; ops/'s
 * dashboards and alerts, which cannot import them, are checked against this list by
 * test/unit/metric-names.test.ts. Prometheus shows each with dots as underscores.
 */
export const METRICS = {
	claims: "dopamine.claims.total",
	queueDepth: "dopamine.allocator.queue.depth",
	batchSize: "dopamine.allocator.batch.size",
	commitSeconds: "dopamine.allocator.commit.seconds",
	remaining: "dopamine.product.remaining",
	takeovers: "dopamine.allocator.takeovers.total",
	unitsRead: "dopamine.allocator.units.read.total",
	commitFailures: "dopamine.allocator.commit.failures.total",
	transportConnected: "dopamine.transport.connected",
	failuresExcused: "dopamine.transport.failures.excused.total",
	deliveries: "dopamine.notifier.deliveries.total",
	deliverySeconds: "dopamine.notifier.delivery.seconds",
	consumerPending: "dopamine.notifier.consumer.pending",
	consumerAckPending: "dopamine.notifier.consumer.ack.pending",
	backlog: "dopamine.notifier.backlog",
} as const;

export type MetricName = (typeof METRICS)[keyof typeof METRICS];

export interface MetricDefinition {
	type: "counter" | "gauge" | "histogram";
	name: MetricName;
	labelNames?: string[];
	buckets?: number[];
	description: string;
}

/**
 * Registered by every node that runs a claim path (gateway, allocator) or watches its NATS link:
 * the claim, the allocator and the transport.
 */
const STORE: MetricDefinition[] = [
	{ type: "counter", name: METRICS.claims, labelNames: ["outcome", "source"], description: "Claims answered, by outcome and by who answered (gateway or allocator)" },
	{ type: "gauge", name: METRICS.queueDepth, labelNames: ["product"], description: "Claims waiting in a product's actor" },
	{ type: "histogram", name: METRICS.batchSize, buckets: [1, 2, 5, 10, 25, 50, 100, 256], description: "Grants per batch commit" },
	{ type: "histogram", name: METRICS.commitSeconds, buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], description: "Batch commit latency" },
	{ type: "gauge", name: METRICS.remaining, labelNames: ["product"], description: "Free slots per product, as its actor sees them" },
	{ type: "counter", name: METRICS.takeovers, labelNames: ["product"], description: "Product takeovers (epoch bumps)" },
	{ type: "counter", name: METRICS.unitsRead, description: "Slot rows the actors read: every live unit at a takeover, only the added ones when a stock change is read in" },
	{ type: "gauge", name: METRICS.transportConnected, description: "1 while this node is connected to NATS, 0 while it reconnects" },
	{ type: "counter", name: METRICS.failuresExcused, description: "Calls timed out or dropped that the circuit breaker did not count: this node's NATS connection was down or just back" },
	{ type: "counter", name: METRICS.commitFailures, labelNames: ["reason"], description: "Batch commits refused (FENCED, CONFLICT) or failed (ERROR)" },
];

/** Registered by the notifier only: absent from a node that runs none (the dashboard reads them as "no notifier"). */
const NOTIFIER: MetricDefinition[] = [
	{ type: "counter", name: METRICS.deliveries, labelNames: ["channel", "status"], description: "Delivery tries by channel and outcome (SENT, RETRY, FAILED)" },
	{ type: "histogram", name: METRICS.deliverySeconds, labelNames: ["channel"], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], description: "From a message's due time to its delivery" },
	{ type: "gauge", name: METRICS.consumerPending, description: "Messages on the channel the notifier's JetStream consumer has not yet been given" },
	{ type: "gauge", name: METRICS.consumerAckPending, description: "Messages given to the notifier's consumer and not yet acknowledged" },
	{ type: "gauge", name: METRICS.backlog, labelNames: ["state"], description: "PENDING deliveries, due now or scheduled for later" },
];

/** Every definition, for checks that the names used elsewhere exist. */
export const METRIC_DEFINITIONS: readonly MetricDefinition[] = [...STORE, ...NOTIFIER];

function ensure(broker: ServiceBroker, definitions: MetricDefinition[]): void {
	for (const d of definitions) if (!broker.metrics.hasMetric(d.name)) broker.metrics.register(d as never);
}

/** The claim path's and the transport's metrics, once per broker, by whoever needs them first. */
export const ensureStoreMetrics = (broker: ServiceBroker): void => ensure(broker, STORE);

/** The notifier's metrics, once per broker. */
export const ensureNotifierMetrics = (broker: ServiceBroker): void => ensure(broker, NOTIFIER);
