import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Config } from "../config";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import type { Ctx } from "../lib/context";
import { notFound, refusedForNow, unauthorized, unavailable } from "../lib/errors";
import { availableNodes } from "../lib/registry";
import { ownerOf } from "../lib/strategies/rendezvous";
import { ensureStoreMetrics, METRICS } from "../lib/store-metrics";
import { ActiveSlot, Answer, ClaimRefused, DEFAULT_ACTOR_OPTIONS, ProductActor, SoldOutFlag } from "./allocator/actor";
import { PgActorStore } from "./allocator/pg-store";
import { PRODUCT_CHANGED_EVENT } from "./products.service";
import { SLOTS_GRANTED_EVENT } from "./slots.service";

/** Broadcast to every gateway: a product's sold-out state, with its epoch, version and lease. */
export const FLAG_EVENT = "allocator.flag";
const OUTBOX_SWEEP_MS = 5_000;
/** Grants' messages wait this long to be sent together: one transaction for many batches. */
const OUTBOX_COALESCE_MS = 50;

/** What a claim's answer looks like on the wire between nodes: small, plain, no Dates. */
export interface WireSlot {
	id: string;
	productId: string;
	status: "HELD" | "PAID";
	heldAt: string;
	expiresAt: string;
	epoch: number;
	seq: number;
}
export interface WireAnswer {
	outcome: Answer["outcome"];
	epoch: number;
	seq: number;
	slot?: WireSlot;
	saleAt?: string;
}

type AllocatorThis = WithDb & WithNotify & {
	config: Config;
	actors: Map<string, ProductActor>;
	store: PgActorStore;
	sweepTimer: NodeJS.Timeout | null;
	actorFor(productId: string): ProductActor;
	ownsProduct(productId: string): boolean;
	retireMovedActors(): void;
	drainOutbox(slotIds: string[] | null): Promise<number>;
	/** Slots whose "granted" message is due; drained together, off the claim path. */
	outboxDue: Set<string>;
	outboxTimer: NodeJS.Timeout | null;
	scheduleOutbox(): void;
};

const wireSlot = (productId: string, s: ActiveSlot): WireSlot => ({
	id: s.id,
	productId,
	status: s.status,
	heldAt: s.heldAt.toISOString(),
	expiresAt: s.expiresAt.toISOString(),
	epoch: s.epoch,
	seq: s.seq,
});

function refusalError(e: ClaimRefused) {
	switch (e.reason) {
		case "BUSY":
			return refusedForNow(e.message, "BUSY", 1);
		case "UNAVAILABLE":
			return refusedForNow(e.message, "UNAVAILABLE", 1);
		case "NOT_FOUND":
			return notFound("Product", "PRODUCT_NOT_FOUND");
		case "UNKNOWN_BUYER":
			return unauthorized(e.message);
		case "MOVED":
			// Retryable: Moleculer's retry asks the strategy again, which now names the new owner.
			return unavailable(e.message, "MOVED", 1);
	}
}

const AllocatorService: ServiceSchema<ServiceSettingSchema, AllocatorThis> = {
	name: "allocator",
	mixins: [ConfigMixin(), DbMixin(), NotifyMixin()],

	actions: {
		/** The hot path: one claim, decided by the product's actor on the node that owns it. */
		claim: {
			visibility: "public",
			strategy: "ProductAffinity",
			params: { productId: { type: "string", max: 24 }, userId: { type: "string", max: 24 } },
			async handler(this: AllocatorThis, ctx: Ctx<{ productId: string; userId: string }>): Promise<WireAnswer> {
				const { productId, userId } = ctx.params;
				const actor = this.actorFor(productId);
				let a: Answer;
				try {
					a = await actor.claim(userId);
				} catch (err) {
					if (err instanceof ClaimRefused) throw refusalError(err);
					throw err;
				} finally {
					this.broker.metrics.set(METRICS.queueDepth, actor.depth, { product: productId });
				}
				return {
					outcome: a.outcome,
					epoch: a.epoch,
					seq: a.seq,
					slot: a.slot && wireSlot(productId, a.slot),
					saleAt: a.saleAt?.toISOString(),
				};
			},
		},

		/** Current sold-out flags of this node's actors, for a gateway that starts mid-sale. */
		flags: {
			visibility: "public",
			params: {},
			handler(this: AllocatorThis): SoldOutFlag[] {
				return [...this.actors.values()].map(a => a.currentFlag()).filter((f): f is SoldOutFlag => f !== null);
			},
		},

		/** A sale's live state on this node, for operators (REPL: `call allocator.state --productId 1`). */
		state: {
			params: { productId: { type: "string", max: 24 } },
			handler(this: AllocatorThis, ctx: Ctx<{ productId: string }>) {
				const a = this.actors.get(ctx.params.productId);
				if (!a) return { productId: ctx.params.productId, loaded: false, owner: this.ownsProduct(ctx.params.productId) };
				return { productId: a.productId, loaded: true, epoch: a.epoch, remaining: a.remaining, depth: a.depth, flag: a.currentFlag() };
			},
		},
	},

	events: {
		[PRODUCT_CHANGED_EVENT](this: AllocatorThis, ctx: Context<{ id: string }>) {
			// Stock, schedule or existence changed: the actor takes the product over again before its next decision.
			this.actors.get(ctx.params.id)?.invalidate();
		},
		"slots.paid"(this: AllocatorThis, ctx: Context<{ slotId: string; productId?: string }>) {
			if (ctx.params.productId) this.actors.get(ctx.params.productId)?.markPaid(ctx.params.slotId);
		},
		"$node.connected"(this: AllocatorThis) {
			this.retireMovedActors();
		},
		"$node.disconnected"(this: AllocatorThis) {
			this.retireMovedActors();
		},
		"$services.changed"(this: AllocatorThis) {
			this.retireMovedActors();
		},
	},

	methods: {
		actorFor(this: AllocatorThis, productId: string): ProductActor {
			let actor = this.actors.get(productId);
			if (actor && !actor.isGone) return actor;
			const metrics = this.broker.metrics;
			actor = new ProductActor(
				productId,
				this.store,
				{ now: () => Date.now(), later: (fn, ms) => void (ms > 0 ? setTimeout(fn, ms) : setImmediate(fn)) },
				{
					committed: (slots, size, ms) => {
						metrics.observe(METRICS.batchSize, size);
						metrics.observe(METRICS.commitSeconds, ms / 1000);
						metrics.set(METRICS.remaining, this.actors.get(productId)?.remaining ?? 0, { product: productId });
						// Sent after the answers went out, a few batches at a time; the sweep covers a crash.
						for (const s of slots) this.outboxDue.add(s.id);
						this.scheduleOutbox();
						// Their remind and expire jobs are due (the grant left jobs_scheduled_at NULL).
						this.broker.emit(SLOTS_GRANTED_EVENT, { count: slots.length });
					},
					flag: flag => {
						metrics.set(METRICS.remaining, this.actors.get(productId)?.remaining ?? 0, { product: productId });
						this.broker.broadcast(FLAG_EVENT, flag);
					},
					tookOver: epoch => {
						metrics.increment(METRICS.takeovers, { product: productId });
						this.logger.info(`Took product ${productId} over at epoch ${epoch}.`);
					},
					commitFailed: reason => metrics.increment(METRICS.commitFailures, { reason }),
					answered: outcome => metrics.increment(METRICS.claims, { outcome, source: "allocator" }),
					stillOwner: () => this.ownsProduct(productId),
				},
				{
					...DEFAULT_ACTOR_OPTIONS,
					queueLimit: this.config.allocatorQueueLimit,
					batchMax: this.config.allocatorBatchMax,
					batchWindowMs: this.config.allocatorBatchWindowMs,
					flagLeaseMs: this.config.soldOutLeaseMs,
					recheckMs: Math.max(100, Math.floor(this.config.soldOutLeaseMs / 2)),
				}
			);
			this.actors.set(productId, actor);
			return actor;
		},

		/** Whether this node is the product's owner in its own view of the allocator nodes. */
		ownsProduct(this: AllocatorThis, productId: string): boolean {
			const available = availableNodes(this.broker, "allocator.claim");
			if (available.length === 0) return true;
			return ownerOf(productId, available, id => id) === this.broker.nodeID;
		},

		/** After membership changes, forget actors of products this node no longer owns. */
		retireMovedActors(this: AllocatorThis) {
			for (const [productId, actor] of this.actors) {
				if (!this.ownsProduct(productId)) this.actors.delete(productId);
				else if (actor.isGone && actor.idle) this.actors.delete(productId);
			}
		},

		scheduleOutbox(this: AllocatorThis) {
			if (this.outboxTimer) return;
			this.outboxTimer = setTimeout(async () => {
				const due = [...this.outboxDue];
				this.outboxDue.clear();
				try {
					for (let i = 0; i < due.length; i += 1000) await this.drainOutbox(due.slice(i, i + 1000));
				} catch (err) {
					this.logger.warn("outbox:", (err as Error).message);
				}
				this.outboxTimer = null;
				if (this.outboxDue.size) this.scheduleOutbox();
			}, OUTBOX_COALESCE_MS);
		},

		/**
		 * Sends the "slot granted" messages recorded with grants: those of the given slots right
		 * after their commit, or (sweep) any left pending a while by a crash. Rows are locked while
		 * sent, so two nodes never send the same one; a crash between send and mark sends it again,
		 * and the message carries the outbox id to let the notifier drop the repeat.
		 */
		async drainOutbox(this: AllocatorThis, slotIds: string[] | null): Promise<number> {
			if (!this.db?.isInitialized) return 0;
			return this.db.transaction(async em => {
				const rows: { id: string; email: string; login_id: string; name: string; expires_at: Date; slot_id: string }[] = await em.query(
					`SELECT o.id, o.slot_id, u.email, u.login_id, p.name, s.expires_at
					 FROM outbox o JOIN slots s ON s.id = o.slot_id JOIN users u ON u.id = s.user_id JOIN products p ON p.id = s.product_id
					 WHERE o.done_at IS NULL AND o.topic = 'slot.granted'
					   AND ${slotIds ? "o.slot_id = ANY($1::bigint[])" : "o.created_at < now() - make_interval(secs => $1)"}
					 ORDER BY o.id LIMIT 1000
					 FOR UPDATE OF o SKIP LOCKED`,
					[slotIds ?? OUTBOX_SWEEP_MS / 1000]
				);
				for (const r of rows) {
					await this.notify({
						kind: "slot.granted",
						channel: "email",
						recipient: r.email,
						subject: `Your slot for ${r.name}`,
						text: `Hello ${r.login_id}, you got a slot for ${r.name}. Pay before ${new Date(r.expires_at).toISOString()} or it goes back on sale.`,
						dedupeKey: `outbox-${r.id}`,
					});
				}
				if (rows.length)
					await em.query(`UPDATE outbox SET done_at = now() WHERE id = ANY($1::bigint[])`, [rows.map(r => r.id)]);
				return rows.length;
			});
		},
	},

	created(this: AllocatorThis) {
		this.actors = new Map();
		this.outboxDue = new Set();
		this.outboxTimer = null;
		this.sweepTimer = null;
		ensureStoreMetrics(this.broker);
	},

	started(this: AllocatorThis) {
		this.store = new PgActorStore(this.db, this.config.slotTtlSeconds);
		const sweep = () => {
			this.drainOutbox(null)
				.catch(err => this.logger.warn("outbox sweep:", err.message))
				.finally(() => {
					if (this.sweepTimer) this.sweepTimer = setTimeout(sweep, OUTBOX_SWEEP_MS);
				});
		};
		this.sweepTimer = setTimeout(sweep, OUTBOX_SWEEP_MS);
	},

	stopped(this: AllocatorThis) {
		if (this.outboxTimer) clearTimeout(this.outboxTimer);
		if (this.sweepTimer) clearTimeout(this.sweepTimer);
		this.sweepTimer = null;
	},
};

export default AllocatorService;
