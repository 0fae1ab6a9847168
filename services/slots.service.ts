import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Config } from "../config";
import { Slot } from "../entities";
import { publicSlot } from "../entities/Slot";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import type { Ctx } from "../lib/context";
import { unauthorized } from "../lib/errors";
import { PRODUCT_CHANGED_EVENT } from "./products.service";

/** Emitted after slots were reclaimed, for the operators' channels and dashboards. */
export const SLOTS_RECLAIMED_EVENT = "slots.reclaimed";

type SlotsThis = WithDb & {
	config: Config;
	sweepTimer: NodeJS.Timeout | null;
	reclaim(onlySlotId?: string): Promise<{ id: string; productId: string; userId: string }[]>;
};

/**
 * A buyer's slots and their lifecycle. Expiry is conditional (still HELD and past expiresAt), so a
 * payment that wins the race is never undone; it keeps the buyer's history (the row becomes
 * EXPIRED) and, in the same transaction, gives the unit a fresh AVAILABLE row, so
 * AVAILABLE + HELD + PAID = stock holds at every commit. The allocator hears of it and sells it again.
 */
const SlotsService: ServiceSchema<ServiceSettingSchema, SlotsThis> = {
	name: "slots",
	mixins: [ConfigMixin(), DbMixin()],

	actions: {
		mine: {
			params: {},
			async handler(this: SlotsThis, ctx: Ctx) {
				if (!ctx.meta.user) throw unauthorized();
				const slots = await this.db.getRepository(Slot).find({
					where: { userId: ctx.meta.user.id },
					order: { heldAt: "DESC", id: "DESC" },
					take: 500,
				});
				return { slots: slots.map(publicSlot) };
			},
		},

		/** Operators (REPL: `call slots.expire --slotId 12`): expire one HELD slot now and reclaim its unit. */
		expire: {
			visibility: "public",
			params: { slotId: { type: "string", numeric: true, max: 20 } },
			async handler(this: SlotsThis, ctx: Ctx<{ slotId: string }>) {
				await this.db.query(`UPDATE slots SET expires_at = now() WHERE id = $1 AND status = 'HELD'`, [ctx.params.slotId]);
				const reclaimed = await this.reclaim(ctx.params.slotId);
				return { expired: reclaimed.length === 1 };
			},
		},

		/** One pass of the safety-net sweep; runs on a timer on every `slots` node. */
		sweep: {
			visibility: "public",
			params: {},
			async handler(this: SlotsThis) {
				return { reclaimed: (await this.reclaim()).length };
			},
		},
	},

	methods: {
		async reclaim(this: SlotsThis, onlySlotId?: string) {
			const expired = await this.db.transaction(async em => {
				// SKIP LOCKED: nodes sweeping at once share the work instead of queueing on it; the
				// status and time are checked again by the UPDATE itself, so a payment that got there
				// first wins.
				const [rows]: [{ id: string; product_id: string; unit: number; user_id: string }[], number] = await em.query(
					`UPDATE slots SET status = 'EXPIRED', expired_at = now()
					 WHERE id IN (
					   SELECT id FROM slots WHERE status = 'HELD' AND expires_at <= now() ${onlySlotId ? "AND id = $1" : ""}
					   ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
					   AND status = 'HELD' AND expires_at <= now()
					 RETURNING id, product_id, unit, user_id`,
					onlySlotId ? [onlySlotId] : []
				);
				if (rows.length > 0)
					await em.query(
						`INSERT INTO slots (product_id, unit) SELECT * FROM unnest($1::bigint[], $2::int[])`,
						[rows.map(r => r.product_id), rows.map(r => r.unit)]
					);
				return rows;
			});
			const products = [...new Set(expired.map(r => String(r.product_id)))];
			// The allocator takes each product over again (the unit is free), which withdraws the
			// gateways' sold-out flag; a lost message is caught by its own re-check.
			for (const id of products) this.broker.broadcast(PRODUCT_CHANGED_EVENT, { id, reclaimed: true });
			if (expired.length) {
				this.broker.emit(SLOTS_RECLAIMED_EVENT, { count: expired.length, products });
				this.logger.info(`Reclaimed ${expired.length} expired slot(s) of product(s) ${products.join(", ")}.`);
			}
			return expired.map(r => ({ id: String(r.id), productId: String(r.product_id), userId: String(r.user_id) }));
		},
	},

	started(this: SlotsThis) {
		const sweep = () => {
			this.reclaim()
				.catch(err => this.logger.warn("slot sweep:", err.message))
				.finally(() => {
					if (this.sweepTimer) this.sweepTimer = setTimeout(sweep, this.config.slotSweepIntervalMs);
				});
		};
		this.sweepTimer = setTimeout(sweep, this.config.slotSweepIntervalMs);
	},

	stopped(this: SlotsThis) {
		if (this.sweepTimer) clearTimeout(this.sweepTimer);
		this.sweepTimer = null;
	},
};

export default SlotsService;
