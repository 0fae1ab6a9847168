import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Config, operatorChannels } from "../config";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import type { Ctx } from "../lib/context";
import { notFound } from "../lib/errors";
import { isId } from "../lib/sql";
import { liveSnapshot, LiveSnapshot, RateMeter, saleCounts } from "./sales/live";
import { sendDueNotices } from "./sales/notices";
import { buildReport } from "./sales/report";

/** How often the live numbers may be recomputed (every viewer shares one), and the watcher's beat. */
const LIVE_TTL_MS = 500;
const WATCH_MS = 1_000;

type SalesThis = WithDb & WithNotify & {
	config: Config;
	meter: RateMeter;
	live: { at: number; snapshot: Promise<LiveSnapshot> } | null;
	liveNow(): Promise<LiveSnapshot>;
	watch(): Promise<void>;
	watchTimer: NodeJS.Timeout | null;
	noticesDone: Set<string>;
};

const productIdParam = { type: "string", max: 24 };

/**
 * Watching a sale: the dashboard's live, cluster-wide numbers, the sale report with its order
 * check (rebuilt from PostgreSQL), and the operators' messages (opened, sold out, summary). Reads
 * only what the store already keeps; the facts the report needs are recorded by the allocator.
 */
const SalesService: ServiceSchema<ServiceSettingSchema, SalesThis> = {
	name: "sales",
	mixins: [ConfigMixin(), DbMixin(), NotifyMixin()],

	actions: {
		/** Today's sales, live, for the whole cluster (GET /api/admin/sales; REPL `sales`). */
		live: {
			auth: "admin",
			params: {},
			handler(this: SalesThis, ctx: Ctx) {
				return this.liveNow();
			},
		},

		/** One sale's live state and owner (REPL `sale <productId>`). */
		state: {
			auth: "admin",
			params: { productId: productIdParam },
			async handler(this: SalesThis, ctx: Ctx<{ productId: string }>) {
				const snapshot = await this.liveNow();
				const product = snapshot.products.find(p => p.id === ctx.params.productId);
				if (!product) throw notFound("Sale (a product opening within a day of now)", "SALE_NOT_FOUND");
				return { product, claims: snapshot.claims, p99ClaimMs: snapshot.p99ClaimMs, allocatorNodes: snapshot.allocatorNodes };
			},
		},

		/** Which allocator node owns which of today's products (REPL `owners`). */
		owners: {
			auth: "admin",
			params: {},
			async handler(this: SalesThis, ctx: Ctx) {
				const s = await this.liveNow();
				return {
					allocatorNodes: s.allocatorNodes,
					products: s.products.map(p => ({ id: p.id, name: p.name, owner: p.owner, epoch: p.epoch, loaded: p.loaded, depth: p.depth })),
				};
			},
		},

		/** The sale report (GET /api/admin/sales/:productId, `?download=1` as a file; REPL `report`). */
		report: {
			auth: "admin",
			params: { productId: productIdParam, download: { type: "string", optional: true, max: 8 } },
			async handler(this: SalesThis, ctx: Ctx<{ productId: string; download?: string }>) {
				const report = isId(ctx.params.productId) ? await buildReport(this.db, ctx.params.productId) : null;
				if (!report) throw notFound("Product", "PRODUCT_NOT_FOUND");
				if (ctx.params.download !== undefined && ctx.params.download !== "0")
					ctx.meta.$responseHeaders = { "Content-Disposition": `attachment; filename="sale-${report.product.id}-report.json"` };
				return { report };
			},
		},
	},

	methods: {
		liveNow(this: SalesThis): Promise<LiveSnapshot> {
			const now = Date.now();
			if (!this.live || now - this.live.at >= LIVE_TTL_MS) {
				const snapshot = liveSnapshot(this.broker, this.db, this.meter);
				this.live = { at: now, snapshot };
				snapshot.catch(() => (this.live = null));
			}
			return this.live.snapshot;
		},

		/** Once a second: the operators' messages that became due. */
		async watch(this: SalesThis) {
			// No operators' channel configured: nothing to tell, and no query each second for it.
			if (operatorChannels(this.config).length === 0) return;
			const now = Date.now();
			for (const r of await saleCounts(this.db)) {
				const sale = { id: String(r.id), name: r.name, stock: r.stock, saleAt: new Date(r.sale_at), available: r.available, held: r.held, paid: r.paid, expired: r.expired };
				await sendDueNotices(this.db, sale, (message, opts) => this.notifyOperators(message, opts), this.config.locale, this.noticesDone, now);
			}
		},
	},

	created(this: SalesThis) {
		this.meter = new RateMeter();
		this.live = null;
		this.watchTimer = null;
		this.noticesDone = new Set();
	},

	started(this: SalesThis) {
		const beat = () => {
			this.watchTimer = setTimeout(() => {
				this.watch()
					.catch(err => this.logger.warn("sale watch:", err.message))
					.finally(() => this.watchTimer && beat());
			}, WATCH_MS);
		};
		beat();
	},

	stopped(this: SalesThis) {
		if (this.watchTimer) clearTimeout(this.watchTimer);
		this.watchTimer = null;
	},
};

export default SalesService;
