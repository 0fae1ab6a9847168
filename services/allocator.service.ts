import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Config } from "../config";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import { heldSlotEmail } from "../lib/messages";
import type { Ctx } from "../lib/context";
import { notFound, refusedForNow, unauthorized, unavailable } from "../lib/errors";
import { signFlag } from "../lib/identity";
import { INDEX_PATHS_ONLY, isId } from "../lib/sql";
import { availableNodes } from "../lib/registry";
import { ownerOf } from "../lib/strategies/rendezvous";
import { ensureStoreMetrics, METRICS } from "../lib/store-metrics";
import { ActiveSlot, ActorStore, Answer, ClaimRefused, DEFAULT_ACTOR_OPTIONS, ProductActor, SoldOutFlag } from "./allocator/actor";
import { PgActorStore, pruneSentOutbox } from "./allocator/pg-store";
import { markOutboxSentSql, outboxLeftPendingSql, outboxOfSlotsSql } from "../store/outbox";
import { productExists } from "../store/products";
import { ClaimStats } from "./allocator/claim-stats";
import { PRODUCT_CHANGED, ProductChanged, SLOT_PAID, SlotPaid, SLOTS_GRANTED, SlotsGranted, SOLD_OUT_FLAG, WireAnswer, WireSlot } from "../contracts";

const OUTBOX_SWEEP_MS = 5_000;
/** Sent outbox rows are kept this long (to look into a delivery), then pruned by the sweep. */
const OUTBOX_KEEP_SENT_SECONDS = 10 * 60;
/** How long "this product does not exist" is believed; products.changed forgets it sooner. */
const UNKNOWN_PRODUCT_TTL_MS = 10_000;
const KNOWN_PRODUCTS_MAX = 10_000;
/** Grants' messages wait this long to be sent together: one transaction for many batches. */
const OUTBOX_COALESCE_MS = 50;

type AllocatorThis = WithDb & WithNotify & {
	config: Config;
	actors: Map<string, ProductActor>;
	store: ActorStore;
	sweepTimer: NodeJS.Timeout | null;
	actorFor(productId: string): ProductActor;
	/** Existence lookups of products with no actor here, cached: an unknown id costs one read. */
	known: Map<string, { exists: Promise<boolean>; until: number }>;
	knownProduct(productId: string): Promise<boolean>;
	/** When each product's actor last took a claim, for the idle release. */
	lastClaimAt: Map<string, number>;
	idleTimer: NodeJS.Timeout | null;
	releaseIdleActors(): void;
	releaseActor(productId: string): void;
	ownsProduct(productId: string): boolean;
	retireMovedActors(): void;
	drainOutbox(slotIds: string[] | null): Promise<number>;
	/** Slots whose "granted" message is due; drained together, off the claim path. */
	outboxDue: Set<string>;
	outboxTimer: NodeJS.Timeout | null;
	scheduleOutbox(): void;
	/** The sale report's per-second and per-epoch facts, written off the claim path. */
	claimStats: ClaimStats;
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

/** The database's own words stay in the log (at most a line a second: an outage fails every claim). */
let lastUnavailableLog = 0;
function logUnavailable(logger: { warn(...a: unknown[]): void }, text: string) {
	const now = Date.now();
	if (now - lastUnavailableLog < 1000) return;
	lastUnavailableLog = now;
	logger.warn(`Claims answered 503 UNAVAILABLE: ${text}`);
}

const UNREACHABLE = "The sale is not reachable just now; try again";

function refusalError(e: ClaimRefused, logger: { warn(...a: unknown[]): void }) {
	switch (e.reason) {
		case "BUSY":
			return refusedForNow(e.message, "BUSY", 1);
		case "UNAVAILABLE":
			// The actor's message carries the driver's error: logged here, never sent to the buyer.
			logUnavailable(logger, e.message);
			return refusedForNow(UNREACHABLE, "UNAVAILABLE", 1);
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
			// Safe to repeat: a second claim of a buyer answers ALREADY_HOLDING; MOVED asks the strategy again.
			retryPolicy: { enabled: true },
			strategy: "ProductAffinity",
			// The buyer is the signed identity the gateway made from the verified token, never a
			// parameter: a node on NATS without the nodes' secret cannot claim for anyone.
			auth: "user",
			params: { productId: { type: "string", max: 24 } },
			async handler(this: AllocatorThis, ctx: Ctx<{ productId: string }>): Promise<WireAnswer> {
				const { productId } = ctx.params;
				const userId = String(ctx.meta.user!.id);
				// An id that names no product gets no actor, no takeover and no metric series.
				if (!this.actors.has(productId) && !(await this.knownProduct(productId))) throw notFound("Product", "PRODUCT_NOT_FOUND");
				this.lastClaimAt.set(productId, Date.now());
				const actor = this.actorFor(productId);
				let a: Answer;
				try {
					a = await actor.claim(userId);
				} catch (err) {
					if (err instanceof ClaimRefused) throw refusalError(err, this.logger);
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
			retryPolicy: { enabled: true },
			params: {},
			handler(this: AllocatorThis): SoldOutFlag[] {
				const now = Date.now();
				return [...this.actors.values()].map(a => a.currentFlag()).filter((f): f is SoldOutFlag => f !== null).map(f => signFlag(this.config.nodeSecret, f, now));
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
		[PRODUCT_CHANGED](this: AllocatorThis, ctx: Context<ProductChanged>) {
			// Existence changed, or units came back: the actor takes the product over again before its next decision.
			this.known.delete(ctx.params.id);
			const actor = this.actors.get(ctx.params.id);
			if (ctx.params.deleted && actor?.idle) this.releaseActor(ctx.params.id);
			else if (ctx.params.deleted || ctx.params.reclaimed || ctx.params.stock === undefined) actor?.invalidate();
			// Stock or schedule only: the running actor reads what was added (issue 20, point 4).
			else actor?.changed();
		},
		[SLOT_PAID](this: AllocatorThis, ctx: Context<SlotPaid>) {
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
						this.broker.emit(SLOTS_GRANTED, { productId, count: slots.length } satisfies SlotsGranted);
					},
					flag: flag => {
						metrics.set(METRICS.remaining, this.actors.get(productId)?.remaining ?? 0, { product: productId });
						// Signed: gateways apply no flag a node did not sign (lib/identity.ts).
						this.broker.broadcast(SOLD_OUT_FLAG, signFlag(this.config.nodeSecret, flag));
					},
					tookOver: epoch => {
						metrics.increment(METRICS.takeovers, { product: productId });
						this.logger.info(`Took product ${productId} over at epoch ${epoch}.`);
					},
					read: units => metrics.increment(METRICS.unitsRead, {}, units),
					commitFailed: reason => metrics.increment(METRICS.commitFailures, { reason }),
					answered: (outcome, epoch, seq) => {
						metrics.increment(METRICS.claims, { outcome, source: "allocator" });
						this.claimStats.record(productId, outcome, epoch, seq);
					},
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

		async knownProduct(this: AllocatorThis, productId: string): Promise<boolean> {
			if (!isId(productId)) return false;
			const now = Date.now();
			const hit = this.known.get(productId);
			if (hit && hit.until > now) return hit.exists;
			if (this.known.size >= KNOWN_PRODUCTS_MAX) this.known.clear();
			const exists = productExists(this.db, productId);
			this.known.set(productId, { exists, until: now + UNKNOWN_PRODUCT_TTL_MS });
			try {
				const found = await exists;
				// A product that exists gets its actor now; only "unknown" needs remembering.
				if (found) this.known.delete(productId);
				return found;
			} catch (err) {
				this.known.delete(productId);
				logUnavailable(this.logger, (err as Error).message);
				throw refusedForNow(UNREACHABLE, "UNAVAILABLE", 1);
			}
		},

		/**
		 * Releases actors that took no claim for ALLOCATOR_IDLE_RELEASE_MS (a finished sale, a product
		 * nobody wants) and actors of products that are gone. Their state is in PostgreSQL: a later
		 * claim takes the product over again.
		 */
		releaseIdleActors(this: AllocatorThis) {
			const now = Date.now();
			for (const [productId, actor] of this.actors) {
				if (!actor.idle) continue;
				if (actor.isGone || now - (this.lastClaimAt.get(productId) ?? 0) >= this.config.allocatorIdleReleaseMs) {
					this.releaseActor(productId);
				}
			}
		},

		releaseActor(this: AllocatorThis, productId: string) {
			this.actors.delete(productId);
			this.lastClaimAt.delete(productId);
			// Its gauges go with it: labelled series exist only for the actors this node holds.
			for (const name of [METRICS.queueDepth, METRICS.remaining]) {
				const m = this.broker.metrics.getMetric(name) as unknown as { values: Map<string, unknown>; hashingLabels(l: object): string; setDirty(): void } | null;
				if (m?.values.delete(m.hashingLabels({ product: productId }))) m.setDirty();
			}
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
				await em.query(INDEX_PATHS_ONLY);
				const rows: { id: string; email: string; login_id: string; name: string; expires_at: Date; slot_id: string; product_id: string }[] = await em.query(
					slotIds ? outboxOfSlotsSql : outboxLeftPendingSql,
					[slotIds ?? OUTBOX_SWEEP_MS / 1000]
				);
				// One publish for the whole drained batch; marked done only once it was accepted.
				await this.notifyMany(
					rows.map(r =>
						heldSlotEmail("slotGranted", this.config.locale, { email: r.email, loginId: r.login_id, productName: r.name, expiresAt: r.expires_at, payUrl: `${this.config.publicUrl}/p/${r.product_id}` }, `outbox-${r.id}`)
					)
				);
				if (rows.length)
					await em.query(markOutboxSentSql, [rows.map(r => r.id)]);
				return rows.length;
			});
		},
	},

	created(this: AllocatorThis) {
		this.actors = new Map();
		this.known = new Map();
		this.lastClaimAt = new Map();
		this.idleTimer = null;
		this.outboxDue = new Set();
		this.outboxTimer = null;
		this.sweepTimer = null;
		ensureStoreMetrics(this.broker);
	},

	started(this: AllocatorThis) {
		// The actors' only I/O: every actor is handed this one store.
		this.store = new PgActorStore(this.db, this.config.slotTtlSeconds);
		this.claimStats = new ClaimStats(() => this.db, msg => this.logger.warn(msg)).start();
		const sweep = () => {
			this.drainOutbox(null)
				.then(() => pruneSentOutbox(this.db, OUTBOX_KEEP_SENT_SECONDS))
				.catch(err => this.logger.warn("outbox sweep:", err.message))
				.finally(() => {
					if (this.sweepTimer) this.sweepTimer = setTimeout(sweep, OUTBOX_SWEEP_MS);
				});
		};
		this.sweepTimer = setTimeout(sweep, OUTBOX_SWEEP_MS);
		this.idleTimer = setInterval(() => this.releaseIdleActors(), Math.max(100, Math.floor(this.config.allocatorIdleReleaseMs / 4)));
	},

	async stopped(this: AllocatorThis) {
		await this.claimStats?.stop();
		if (this.outboxTimer) clearTimeout(this.outboxTimer);
		if (this.sweepTimer) clearTimeout(this.sweepTimer);
		if (this.idleTimer) clearInterval(this.idleTimer);
		this.sweepTimer = null;
	},
};

export default AllocatorService;
