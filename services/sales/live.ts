import type { ServiceBroker } from "moleculer";
import { asNode } from "../../lib/identity";
import type { DataSource } from "typeorm";
import { queryIndexed } from "../../lib/sql";
import { saleCountsSql } from "../../store/products";
import { recentClaims } from "../../store/claim-stats";
import { availableNodes } from "../../lib/registry";
import { METRICS } from "../../lib/store-metrics";
import { ownerOf } from "../../lib/strategies/rendezvous";

/**
 * The dashboard's live numbers, for the whole cluster, from what the store already keeps:
 * - every node's metrics (Moleculer's built-in `$node.metrics` action, asked of each node): claims
 *   answered by outcome, the allocator's claim latency, the notifier's lag and deliveries;
 * - each product's actor state, asked of its owner (`allocator.state`): epoch, queue depth;
 * - one aggregate count of the slot rows per product per refresh (not per claim), shared by every
 *   viewer of the dashboard: stock, held, paid, expired, remaining.
 * Nothing here touches the claim path.
 */

export interface LiveProduct {
	id: string;
	name: string;
	stock: number;
	saleAt: string;
	status: "SCHEDULED" | "ON_SALE" | "SOLD_OUT";
	held: number;
	paid: number;
	expired: number;
	remaining: number;
	epoch: number;
	owner: string | null;
	/** Whether the owner has the product's actor in memory, and its queue depth. */
	loaded: boolean;
	depth: number;
	/** Claims the allocator answered for this product in the last complete seconds, per second. */
	claimsPerSecond: Record<string, number>;
}

export interface LiveSnapshot {
	at: string;
	nodes: { id: string; services: string[] }[];
	allocatorNodes: string[];
	claims: { total: Record<string, number>; perSecond: Record<string, number> };
	/** Highest p99 of `allocator.claim` over the allocator nodes (their last 60 s), in ms. */
	p99ClaimMs: number | null;
	notifier: { lag: number | null; failed: number | null; byStatus: Record<string, number> };
	products: LiveProduct[];
}

interface MetricSnapshot {
	name: string;
	type: string;
	values: { labels: Record<string, string>; value?: number; count?: number; quantiles?: Record<string, number | undefined> }[];
}

/** Products on today's sales with their row counts (store/products.ts saleCountsSql), read by index paths only. */
export function saleCounts(db: DataSource): Promise<{ id: string; name: string; stock: number; sale_at: Date; epoch: number; available: number; held: number; paid: number; expired: number }[]> {
	return queryIndexed(db, saleCountsSql);
}

/** Per product, claims per second over the last two complete seconds the recorder has written. */
export async function recentClaimRates(db: DataSource): Promise<Map<string, Record<string, number>>> {
	const rows = await recentClaims(db);
	const out = new Map<string, Record<string, number>>();
	for (const r of rows) {
		const m = out.get(String(r.product_id)) ?? {};
		m[r.outcome] = r.n / 2;
		out.set(String(r.product_id), m);
	}
	return out;
}

/** "node|outcome" counts as node -> outcome -> count. */
function countsByNode(totals: Map<string, number>): Map<string, Map<string, number>> {
	const byNode = new Map<string, Map<string, number>>();
	for (const [key, n] of totals) {
		const [node, outcome] = key.split("|");
		if (!byNode.has(node)) byNode.set(node, new Map());
		byNode.get(node)!.set(outcome, n);
	}
	return byNode;
}

/**
 * Claims per second from the cluster's counters: per node and outcome, so a restarted node (its
 * counter reset) counts from zero. A node whose metrics did not come back this refresh (its call
 * timed out) keeps its last rate, and is measured next time from the last sample it answered:
 * counted as missing, it made the chart dip for one refresh and then spike, its whole total
 * counted as one second's claims. The running totals are carried the same way.
 */
export class RateMeter {
	private samples: { at: number; totals: Map<string, number>; answered: Set<string> }[] = [];
	private lastByNode = new Map<string, { at: number; rates: Record<string, number> }>();
	private lastTotals = new Map<string, Map<string, number>>();

	/** `answered`: the nodes whose metrics came back (default: those with a key in `totals`). */
	rates(totals: Map<string, number>, now: number, answered: Set<string> = new Set([...totals.keys()].map(k => k.split("|")[0]))): Record<string, number> {
		this.samples.push({ at: now, totals, answered });
		this.samples = this.samples.filter(s => now - s.at <= 5_000);
		const old = this.samples.filter(s => now - s.at >= 900);
		const byNode = countsByNode(totals);
		const out: Record<string, number> = {};
		const add = (rates: Record<string, number>) => {
			for (const [k, v] of Object.entries(rates)) out[k] = (out[k] ?? 0) + v;
		};
		for (const node of answered) {
			// The newest sample about a second old that this node answered; a node in no sample
			// yet is new to the cluster and counts from zero; a fresh meter has no rate yet.
			const base = [...old].reverse().find(s => s.answered.has(node));
			const seenBefore = this.samples.some(s => s !== this.samples[this.samples.length - 1] && s.answered.has(node));
			const from = base ?? (seenBefore ? undefined : old[old.length - 1]);
			if (!from) {
				const carried = this.lastByNode.get(node);
				if (carried && now - carried.at <= 5_000) add(carried.rates);
				continue;
			}
			const dt = (now - from.at) / 1000;
			const rates: Record<string, number> = {};
			for (const [outcome, n] of byNode.get(node) ?? []) {
				const before = base ? (from.totals.get(`${node}|${outcome}`) ?? 0) : 0;
				rates[outcome] = (n >= before ? n - before : n) / dt;
			}
			this.lastByNode.set(node, { at: now, rates });
			add(rates);
		}
		// Nodes that did not answer now: their last rate, for a few seconds.
		for (const [node, carried] of this.lastByNode) {
			if (answered.has(node)) continue;
			if (now - carried.at > 5_000) this.lastByNode.delete(node);
			else add(carried.rates);
		}
		for (const k of Object.keys(out)) out[k] = Math.round(out[k] * 10) / 10;
		return out;
	}

	/**
	 * The cluster's running totals by outcome. A node still in the cluster whose metrics call failed
	 * counts with the totals it last answered (leaving it out made the totals drop for one refresh);
	 * a node that left takes its counters with it.
	 */
	totals(totals: Map<string, number>, answered: Set<string>, listed: string[]): Record<string, number> {
		const byNode = countsByNode(totals);
		for (const node of answered) this.lastTotals.set(node, byNode.get(node) ?? new Map());
		const out: Record<string, number> = {};
		for (const node of listed) for (const [outcome, n] of this.lastTotals.get(node) ?? []) out[outcome] = (out[outcome] ?? 0) + n;
		for (const node of this.lastTotals.keys()) if (!listed.includes(node)) this.lastTotals.delete(node);
		return out;
	}
}

/** Deliveries that finally failed, from the notifier's log (its counters restart with a node); null without a notifier. */
async function failedDeliveries(broker: ServiceBroker): Promise<number | null> {
	if (availableNodes(broker, "notifier.list").length === 0) return null;
	return broker
		.call<{ total?: number }, object>("notifier.list", { status: "FAILED", page: 1 }, { ...asNode(broker), timeout: 1_500, retries: 0 })
		.then(r => (typeof r.total === "number" ? r.total : null), () => null);
}

/** A node's metrics, or null when its call failed (timed out, or the node is leaving). */
async function nodeMetrics(broker: ServiceBroker, nodeID: string): Promise<MetricSnapshot[] | null> {
	return broker
		.call<MetricSnapshot[], object>("$node.metrics", { includes: ["dopamine.**", "moleculer.request.time"] }, { nodeID, timeout: 1_500, retries: 0 })
		.catch(() => null);
}

export async function liveSnapshot(broker: ServiceBroker, db: DataSource, meter: RateMeter): Promise<LiveSnapshot> {
	const now = Date.now();
	const nodes = ((broker.registry as any).getNodeList({ onlyAvailable: true, withServices: true }) as any[]).map(n => ({
		id: String(n.id),
		services: ((n.services ?? []) as { name: string }[]).map(s => s.name).filter(s => !s.startsWith("$")),
	}));
	const allocators = availableNodes(broker, "allocator.claim");
	const [metrics, counts, rates, failedLogged] = await Promise.all([
		Promise.all(nodes.map(async n => ({ node: n.id, list: await nodeMetrics(broker, n.id) }))),
		saleCounts(db),
		recentClaimRates(db),
		failedDeliveries(broker),
	]);

	const totals = new Map<string, number>();
	// A node whose metrics call failed (null) is "unknown", not "no claims": the meter carries its last rate.
	const answered = new Set(metrics.filter(m => m.list !== null).map(m => m.node));
	let p99: number | null = null;
	let lag: number | null = null;
	const byStatus: Record<string, number> = {};
	for (const { node, list } of metrics) {
		for (const m of list ?? []) {
			if (m.name === METRICS.claims)
				for (const v of m.values) {
					const key = `${node}|${v.labels.outcome}`;
					totals.set(key, (totals.get(key) ?? 0) + (v.value ?? 0));
				}
			else if (m.name === "moleculer.request.time")
				for (const v of m.values) {
					const q = v.quantiles?.["0.99"];
					if (v.labels.action === "allocator.claim" && typeof q === "number") p99 = Math.max(p99 ?? 0, q);
				}
			// The notifier's (absent until a notifier node runs): its consumer's lag, its tries by status.
			else if (m.name === METRICS.consumerPending) lag = (lag ?? 0) + m.values.reduce((a, v) => a + (v.value ?? 0), 0);
			else if (m.name === METRICS.deliveries)
				for (const v of m.values) byStatus[v.labels.status] = (byStatus[v.labels.status] ?? 0) + (v.value ?? 0);
		}
	}

	const products = await Promise.all(
		counts.map(async (r): Promise<LiveProduct> => {
			const id = String(r.id);
			const owner = ownerOf(id, allocators, x => x) ?? null;
			const state: { loaded?: boolean; epoch?: number; depth?: number } = owner
				? await broker.call<any, object>("allocator.state", { productId: id }, { nodeID: owner, timeout: 1_500, retries: 0 }).catch(() => ({}))
				: {};
			const saleAt = new Date(r.sale_at);
			return {
				id,
				name: r.name,
				stock: r.stock,
				saleAt: saleAt.toISOString(),
				status: now < saleAt.getTime() ? "SCHEDULED" : r.available === 0 ? "SOLD_OUT" : "ON_SALE",
				held: r.held,
				paid: r.paid,
				expired: r.expired,
				remaining: r.available,
				epoch: state.loaded && state.epoch !== undefined ? state.epoch : r.epoch,
				owner,
				loaded: !!state.loaded,
				depth: state.depth ?? 0,
				claimsPerSecond: rates.get(id) ?? {},
			};
		})
	);

	return {
		at: new Date(now).toISOString(),
		nodes,
		allocatorNodes: allocators,
		claims: { total: meter.totals(totals, answered, nodes.map(n => n.id)), perSecond: meter.rates(totals, now, answered) },
		p99ClaimMs: p99 === null ? null : Math.round((p99 as number) * 100) / 100,
		notifier: { lag, failed: failedLogged ?? byStatus.FAILED ?? (Object.keys(byStatus).length ? 0 : null), byStatus },
		products,
	};
}
