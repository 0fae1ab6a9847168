import type { ServiceBroker } from "moleculer";

/** The store's own metrics, beside Moleculer's; registered once per broker by whoever needs them. */
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
} as const;

const definitions = [
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

export function ensureStoreMetrics(broker: ServiceBroker): void {
	for (const d of definitions) if (!broker.metrics.hasMetric(d.name)) broker.metrics.register(d as never);
}
