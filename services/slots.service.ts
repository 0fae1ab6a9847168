import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Config } from "../config";
import { Slot } from "../entities";
import { publicSlot } from "../entities/Slot";
import { AgendaLike, AgendaMixin, WithAgenda } from "../mixins/agenda.mixin";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import type { Ctx } from "../lib/context";
import { unauthorized } from "../lib/errors";
import { PRODUCT_CHANGED_EVENT } from "./products.service";

/** Emitted after slots were reclaimed, for the operators' channels and dashboards. */
export const SLOTS_RECLAIMED_EVENT = "slots.reclaimed";
/** Emitted by the allocator after a batch of grants commits: their jobs are due. */
export const SLOTS_GRANTED_EVENT = "slots.granted";
/** Jobs are scheduled this long after the grants that made them due, many batches together. */
const JOBS_COALESCE_MS = 50;

type SlotsThis = WithDb & WithNotify & WithAgenda & {
	config: Config;
	sweepTimer: NodeJS.Timeout | null;
	jobsTimer: NodeJS.Timeout | null;
	reclaim(onlySlotId?: string): Promise<{ id: string; productId: string; userId: string }[]>;
	scheduleDueJobs(): Promise<number>;
	scheduleSoon(): void;
	remind(slotId: string): Promise<boolean>;
};

/**
 * A buyer's slots and their lifecycle. Expiry is conditional (still HELD and past expiresAt), so a
 * payment that wins the race is never undone; it keeps the buyer's history (the row becomes
 * EXPIRED) and, in the same transaction, gives the unit a fresh AVAILABLE row, so
 * AVAILABLE + HELD + PAID = stock holds at every commit. The allocator hears of it and sells it again.
 */
const SlotsService: ServiceSchema<ServiceSettingSchema, SlotsThis> = {
	name: "slots",
	mixins: [ConfigMixin(), DbMixin(), NotifyMixin(), AgendaMixin()],

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
				const reclaimed = await this.reclaim(ctx.params.slotId);
				return { expired: reclaimed.length === 1 };
			},
		},

		/**
		 * One pass of the safety net, which also runs on a timer on every `slots` node: expire what
		 * lost its job, schedule the jobs a crash left unscheduled.
		 */
		sweep: {
			visibility: "public",
			params: {},
			async handler(this: SlotsThis) {
				const reclaimed = (await this.reclaim()).length;
				const scheduled = await this.scheduleDueJobs();
				return { reclaimed, scheduled };
			},
		},
	},

	events: {
		[SLOTS_GRANTED_EVENT](this: SlotsThis) {
			this.scheduleSoon();
		},
		/** A paid slot's jobs can go; they would change nothing anyway (both are conditional). */
		async "slots.paid"(this: SlotsThis, ctx: { params: { slotId: string } }) {
			await this.agenda?.cancel({ data: { slotId: ctx.params.slotId } }).catch(err => this.logger.warn("cancel jobs:", err.message));
		},
	},

	methods: {
		defineJobs(this: SlotsThis, agenda: AgendaLike) {
			// Both jobs are conditional in the database, so running one twice (Agenda may, past its
			// lock lifetime) or after a payment (cancelling is best effort) changes nothing.
			agenda.define("slot.expire", async job => {
				await this.reclaim(String(job.attrs.data.slotId));
			});
			agenda.define("slot.remind", async job => {
				await this.remind(String(job.attrs.data.slotId));
			});
		},

		/** The reminder goes out once, and only while the slot is still HELD and unexpired. */
		async remind(this: SlotsThis, slotId: string) {
			const [rows]: [{ email: string; login_id: string; name: string; expires_at: Date }[], number] = await this.db.query(
				`UPDATE slots s SET reminded_at = now()
				 FROM users u, products p
				 WHERE s.id = $1 AND s.status = 'HELD' AND s.expires_at > now() AND s.reminded_at IS NULL
				   AND u.id = s.user_id AND p.id = s.product_id
				 RETURNING u.email, u.login_id, p.name, s.expires_at`,
				[slotId]
			);
			if (rows.length === 0) return false;
			const r = rows[0];
			const minutes = Math.max(1, Math.round((new Date(r.expires_at).getTime() - Date.now()) / 60_000));
			await this.notify({
				kind: "slot.reminder",
				channel: "email",
				recipient: r.email,
				subject: `Your slot for ${r.name} expires in ${minutes} minute${minutes === 1 ? "" : "s"}`,
				text: `Hello ${r.login_id}, your slot for ${r.name} expires at ${new Date(r.expires_at).toISOString()}. Pay before then or it goes back on sale.`,
				dedupeKey: `remind-${slotId}`,
			});
			return true;
		},

		scheduleSoon(this: SlotsThis) {
			if (this.jobsTimer) return;
			this.jobsTimer = setTimeout(() => {
				this.scheduleDueJobs()
					.catch(err => this.logger.warn("scheduling slot jobs:", err.message))
					.finally(() => (this.jobsTimer = null));
			}, JOBS_COALESCE_MS);
		},

		/**
		 * Schedules the remind and expire jobs of every grant whose jobs are due (the grant left
		 * jobs_scheduled_at NULL), off the claim path, in bulk; the sweep calls it too, so a grant
		 * whose node crashed before this ran still gets its jobs.
		 */
		async scheduleDueJobs(this: SlotsThis) {
			if (!this.agenda) return 0;
			let total = 0;
			for (;;) {
				const n = await this.db.transaction(async em => {
					const due: { id: string; expires_at: Date }[] = await em.query(
						`SELECT id, expires_at FROM slots WHERE status = 'HELD' AND jobs_scheduled_at IS NULL
						 ORDER BY held_at LIMIT 500 FOR UPDATE SKIP LOCKED`
					);
					const now = Date.now();
					for (const slot of due) {
						const expiresAt = new Date(slot.expires_at).getTime();
						const remindAt = Math.max(now, expiresAt - this.config.slotReminderBeforeSeconds * 1000);
						if (remindAt < expiresAt) {
							const remind = this.agenda.create("slot.remind", { slotId: String(slot.id) });
							remind.schedule(new Date(remindAt));
							await remind.save();
						}
						const expire = this.agenda.create("slot.expire", { slotId: String(slot.id) });
						expire.schedule(new Date(expiresAt));
						await expire.save();
					}
					if (due.length) await em.query(`UPDATE slots SET jobs_scheduled_at = now() WHERE id = ANY($1::bigint[])`, [due.map(d => d.id)]);
					return due.length;
				});
				total += n;
				if (n < 500) return total;
			}
		},

		/** Expires overdue HELD slots, or (an operator's order) the one slot given, overdue or not. */
		async reclaim(this: SlotsThis, onlySlotId?: string) {
			const expired = await this.db.transaction(async em => {
				// SKIP LOCKED: nodes sweeping at once share the work instead of queueing on it; the
				// status and time are checked again by the UPDATE itself, so a payment that got there
				// first wins.
				const [rows]: [{ id: string; product_id: string; unit: number; user_id: string }[], number] = await em.query(
					`UPDATE slots SET status = 'EXPIRED', expired_at = now(), expires_at = least(expires_at, now())
					 WHERE id IN (
					   SELECT id FROM slots WHERE status = 'HELD' AND ${onlySlotId ? "id = $1" : "expires_at <= now()"}
					   ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
					   AND status = 'HELD' ${onlySlotId ? "" : "AND expires_at <= now()"}
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

	created(this: SlotsThis) {
		this.sweepTimer = null;
		this.jobsTimer = null;
	},

	started(this: SlotsThis) {
		// The safety net: expire what lost its job, schedule what a crash left unscheduled.
		const sweep = () => {
			this.actions.sweep({})
				.catch(err => this.logger.warn("slot sweep:", err.message))
				.finally(() => {
					if (this.sweepTimer) this.sweepTimer = setTimeout(sweep, this.config.slotSweepIntervalMs);
				});
		};
		this.sweepTimer = setTimeout(sweep, this.config.slotSweepIntervalMs);
	},

	stopped(this: SlotsThis) {
		if (this.jobsTimer) clearTimeout(this.jobsTimer);
		if (this.sweepTimer) clearTimeout(this.sweepTimer);
		this.sweepTimer = null;
	},
};

export default SlotsService;
