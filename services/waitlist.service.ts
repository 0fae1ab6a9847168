import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { PRODUCT_CHANGED, ProductChanged } from "../contracts";
import type { Ctx } from "../lib/context";
import { conflict, forbidden, notFound, unauthorized, unavailable } from "../lib/errors";
import { buyerMessages } from "../lib/messages";
import { isId } from "../lib/sql";
import type { Config } from "../config";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import * as sql from "../store/sale-waits";
import { openingOf } from "../store/products";

type WaitlistThis = WithDb & WithNotify & {
	config: Config;
	catchUpTimer: NodeJS.Timeout | null;
	follow(productId: string, change: { deleted?: boolean; saleAt?: string | Date | null }): Promise<void>;
	catchUp(): Promise<number>;
	noticeAt(saleAt: Date): Date;
	publishNotice(w: sql.WaitRow): Promise<void>;
	cancelNotice(productId: string, userId: string, saleAt: Date): Promise<void>;
};

/**
 * How often a waitlist node looks for waits a product change left behind (a change made while no
 * waitlist node ran, or whose event met a database outage). Also once at start.
 */
const CATCH_UP_MS = 60_000;

/** One notice per buyer, product and opening: asking twice, or two nodes moving it, sends one. */
const noticeKey = (productId: string, userId: string, saleAt: Date) => `sale-opening-${productId}-${userId}-${saleAt.getTime()}`;

/** The signed identity the middleware verified (these actions declare `auth: "user"`). */
function buyerOf(ctx: Ctx<unknown>): string {
	if (!ctx.meta.user) throw unauthorized();
	return String(ctx.meta.user.id);
}

const productId = { type: "string", max: 40 };

/**
 * "Notify me" (알림 신청): buyers waiting for a sale to open. Each wait is one e-mail the notifier
 * holds until NOTIFY_ME_BEFORE_SECONDS before the opening (its `sendAt`); a reschedule moves it
 * (cancel, publish again for the new opening), a deletion cancels it.
 */
const WaitlistService: ServiceSchema<ServiceSettingSchema, WaitlistThis> = {
	name: "waitlist",
	mixins: [ConfigMixin(), DbMixin(), NotifyMixin()],

	actions: {
		/** `POST /api/products/:id/notify-me`: 201 when added, 200 when already waiting (one notice either way). */
		join: {
			auth: "user",
			params: { $$strict: "remove", id: productId },
			async handler(this: WaitlistThis, ctx: Ctx<{ id: string }>) {
				const userId = buyerOf(ctx);
				const product = isId(ctx.params.id) ? await openingOf(this.db, ctx.params.id) : undefined;
				if (!product) throw notFound("Product", "PRODUCT_NOT_FOUND");
				if (product.open) throw conflict("This sale is open already: there is nothing to wait for", "SALE_OPEN", { saleAt: product.sale_at.toISOString() });
				const added = await sql.join(this.db, product.id, userId);
				if (added) {
					try {
						await this.publishNotice(added);
					} catch (err) {
						// No notice on its way: no wait either, so asking again tries again.
						await sql.leave(this.db, product.id, userId);
						this.logger.warn(`notify-me notice for product ${product.id} not published: ${(err as Error).message}`);
						throw unavailable("The notice could not be scheduled just now; try again");
					}
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/api/products/${product.id}/notify-me`;
				}
				const wait = added ?? (await sql.waitOf(this.db, product.id, userId));
				return { waiting: true, notifyAt: this.noticeAt(wait!.sale_at).toISOString() };
			},
		},

		/** `DELETE /api/products/:id/notify-me`: the buyer withdraws; the notice is cancelled. */
		leave: {
			auth: "user",
			params: { $$strict: "remove", id: productId },
			async handler(this: WaitlistThis, ctx: Ctx<{ id: string }>) {
				const userId = buyerOf(ctx);
				// Withdrawing twice is fine (200); from a product that does not exist, a 404 like every product route.
				if (!isId(ctx.params.id) || !(await openingOf(this.db, ctx.params.id))) throw notFound("Product", "PRODUCT_NOT_FOUND");
				const gone = await sql.leave(this.db, ctx.params.id, userId);
				if (gone) await this.cancelNotice(ctx.params.id, userId, gone.sale_at);
				return { waiting: false };
			},
		},

		/** `GET /api/products/:id/notify-me`: whether this buyer waits, and when the notice goes. */
		mine: {
			auth: "user",
			params: { $$strict: "remove", id: productId },
			async handler(this: WaitlistThis, ctx: Ctx<{ id: string }>) {
				const userId = buyerOf(ctx);
				const wait = isId(ctx.params.id) ? await sql.waitOf(this.db, ctx.params.id, userId) : undefined;
				return wait ? { waiting: true, notifyAt: this.noticeAt(wait.sale_at).toISOString() } : { waiting: false, notifyAt: null };
			},
		},

		/** `GET /api/admin/waitlist`: how many buyers wait for each product (products with none left out). */
		counts: {
			auth: "admin",
			params: {},
			async handler(this: WaitlistThis) {
				const rows = await sql.counts(this.db);
				return { waiting: Object.fromEntries(rows.map(r => [r.product_id, r.n])) };
			},
		},
	},

	events: {
		/** A reschedule moves each pending notice to the new opening; a deletion cancels them. */
		async [PRODUCT_CHANGED](this: WaitlistThis, ctx: Context<ProductChanged>) {
			const { id, deleted, saleAt } = ctx.params;
			try {
				await this.follow(id, { deleted, saleAt });
			} catch (err) {
				// The next catch-up (CATCH_UP_MS) moves them.
				this.logger.error(`notify-me notices of product ${id} not moved: ${(err as Error).message}`);
			}
		},
	},

	methods: {
		/**
		 * Brings a product's waits in step with it: a deleted product's are dropped and their notices
		 * cancelled; a rescheduled one's move to the new opening, each notice cancelled and published
		 * again. One transaction: the rows change only if every notice did, so a publish that fails
		 * leaves the waits out of step for the next catch-up (notices are keyed by opening, so a
		 * second try sends one). `move` locks the rows: however many nodes heard the change or
		 * caught up at once, one moves each wait.
		 */
		async follow(this: WaitlistThis, productId: string, change: { deleted?: boolean; saleAt?: string | Date | null }) {
			if (!change.deleted && !change.saleAt) return;
			await this.db.transaction(async em => {
				if (change.deleted) {
					for (const w of await sql.dropProduct(em, productId)) await this.cancelNotice(productId, w.user_id, w.sale_at);
					return;
				}
				const at = new Date(change.saleAt!);
				for (const w of await sql.move(em, productId, at)) {
					await this.cancelNotice(productId, w.user_id, w.old_sale_at);
					// Moved into the past: the sale is open, the notice has nothing left to announce.
					if (at.getTime() > Date.now()) await this.publishNotice(w);
				}
			});
		},

		/** Every product whose waits a change left behind, followed; how many there were. */
		async catchUp(this: WaitlistThis): Promise<number> {
			const behind = await sql.outOfStep(this.db);
			for (const p of behind) {
				this.logger.warn(`notify-me notices of product ${p.product_id} were out of step (${p.sale_at ? "rescheduled" : "deleted"} unheard): moving them now`);
				await this.follow(p.product_id, p.sale_at ? { saleAt: p.sale_at } : { deleted: true });
			}
			return behind.length;
		},

		noticeAt(this: WaitlistThis, saleAt: Date): Date {
			return new Date(Math.max(Date.now(), saleAt.getTime() - this.config.notifyMeBeforeSeconds * 1000));
		},

		async publishNotice(this: WaitlistThis, w: sql.WaitRow) {
			await this.notifyMany([
				{
					...buyerMessages.saleOpening(this.config.locale, {
						loginId: w.login_id,
						productName: w.name,
						saleAt: w.sale_at,
						productUrl: `${this.config.publicUrl}/p/${w.product_id}`,
					}),
					channel: "email",
					recipient: w.email,
					sendAt: new Date(w.sale_at.getTime() - this.config.notifyMeBeforeSeconds * 1000).toISOString(),
					dedupeKey: noticeKey(w.product_id, w.user_id, w.sale_at),
				},
			]);
		},

		async cancelNotice(this: WaitlistThis, productId: string, userId: string, saleAt: Date) {
			await this.cancelNotification(noticeKey(productId, userId, saleAt));
		},
	},

	created(this: WaitlistThis) {
		this.catchUpTimer = null;
	},

	started(this: WaitlistThis) {
		// A catch-up cut off by this node's own stop is no news: the next node's start catches up.
		const catchUp = () => this.catchUp().catch(err => this.broker.stopping || this.logger.warn(`notify-me catch-up failed: ${(err as Error).message}`));
		// The first catch-up once a notifier answers (on this node it starts beside this service, so
		// not yet); the start does not wait for it. Then every CATCH_UP_MS.
		this.waitForServices(["notifier"], CATCH_UP_MS).then(catchUp, () => undefined);
		this.catchUpTimer = setInterval(catchUp, CATCH_UP_MS);
		this.catchUpTimer.unref();
	},

	stopped(this: WaitlistThis) {
		if (this.catchUpTimer) clearInterval(this.catchUpTimer);
	},
};

export default WaitlistService;
