import type { Errors, Middleware, ServiceBroker } from "moleculer";
import { ensureStoreMetrics, METRICS } from "./store-metrics";

/**
 * This node's own view of its NATS connection, for the circuit breaker's `check`.
 *
 * The breaker sits inside Moleculer's Timeout middleware, so what it counts for a remote action is
 * what comes back through the transit: the remote node's own REQUEST_TIMEOUT (its handler hung),
 * a crash, or REQUEST_REJECTED, which the registry gives every call still pending at a node whose
 * heartbeats stopped. While this node itself cannot reach NATS, every node's heartbeats stop for
 * it, and every call in flight is rejected so: the outage was the transport's, shared by every
 * endpoint, and opening their breakers would only turn buyers away for `halfOpenTime` after NATS is
 * back (or move products for nothing). Such failures are excused, during the outage and for a grace
 * after it. While NATS is fine they still count: that is how a hung or lost node loses its products.
 *
 * Moleculer 0.14's NATS transporter (with nats.js 2) logs the client's status at debug and acts on
 * none of it, so the watch reads the same status stream itself.
 */
export class TransportWatch {
	/** When this node lost NATS, or null while connected. */
	private downSince: number | null = null;
	/** When this node last got NATS back. */
	private upAt = Number.NEGATIVE_INFINITY;
	private broker: ServiceBroker | null = null;

	/**
	 * @param graceMs how long after NATS came back a failure is still the outage's: the node called
	 *   may reconnect a reconnect wait after this one, and the registry may drop it (its heartbeats
	 *   missed during the outage) up to a heartbeat timeout later.
	 */
	constructor(private readonly graceMs: number) {}

	/** True when `err` is a failure this node's own NATS outage explains (the breaker does not count it). */
	excuses(err: Error, now = Date.now()): boolean {
		if (!TRANSPORT_FAILURES.has((err as Errors.MoleculerError).type)) return false;
		if (this.downSince === null && now - this.upAt >= this.graceMs) return false;
		this.broker?.metrics.increment(METRICS.failuresExcused);
		return true;
	}

	lost(now = Date.now()): void {
		if (this.downSince === null) this.downSince = now;
		this.broker?.metrics.set(METRICS.transportConnected, 0);
	}

	regained(now = Date.now()): void {
		this.downSince = null;
		this.upAt = now;
		this.broker?.metrics.set(METRICS.transportConnected, 1);
	}

	/** Follows the transporter's client from the moment the broker started (the transit connects first). */
	middleware(): Middleware {
		return {
			name: "TransportWatch",
			created: (broker: ServiceBroker) => {
				if (!broker.isMetricsEnabled()) return;
				this.broker = broker;
				ensureStoreMetrics(broker);
			},
			started: (broker: ServiceBroker) => {
				const client = (broker.transit as unknown as { tx?: { client?: NatsStatusSource } } | undefined)?.tx?.client;
				if (typeof client?.status !== "function") return; // no transporter, or nats.js 1
				this.broker?.metrics.set(METRICS.transportConnected, 1);
				void (async () => {
					for await (const s of client.status()) {
						if (s.type === "disconnect") this.lost();
						else if (s.type === "reconnect") this.regained();
					}
				})().catch(() => undefined);
			},
		} as unknown as Middleware;
	}
}

/** What a call meets when the caller cannot hear the node it called. A crash is never excused. */
const TRANSPORT_FAILURES = new Set(["REQUEST_TIMEOUT", "REQUEST_REJECTED"]);

/** What the watch uses of a nats.js 2 connection. */
interface NatsStatusSource {
	status(): AsyncIterable<{ type: string }>;
}
