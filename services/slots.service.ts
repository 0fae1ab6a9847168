import { createHash } from "node:crypto";
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Config } from "../config";
import { Slot } from "../entities";
import { publicSlot } from "../entities/Slot";
import { AgendaLike, AgendaMixin, WithAgenda } from "../mixins/agenda.mixin";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import { buyerMessages, heldSlotEmail, operatorMessages } from "../lib/messages";
import type { Ctx } from "../lib/context";
import { dueForJobsSql, expireAndReclaim, markJobsScheduledSql, markRemindedSql, reclaimedFactsSql } from "../store/slots";
import { scheduleDueJobsSql } from "../store/agenda-jobs";
import { PRODUCT_CHANGED, ProductChanged, SLOT_PAID, SlotPaid, SLOTS_GRANTED, SLOTS_RECLAIMED, SlotsReclaimed, MessageBody } from "../contracts";

/** Jobs are scheduled this long after the grants that made them due, many batches together. */
const JOBS_COALESCE_MS = 50;

type SlotsThis = WithDb & WithNotify & WithAgenda & {
	config: Config;
	sweepTimer: NodeJS.Timeout | null;
	jobsTimer: NodeJS.Timeout | null;
	reclaim(one?: { slotId: string; evenIfNotDue: boolean }): Promise<{ id: string; productId: string; userId: string }[]>;
	scheduleDueJobs(): Promise<number>;
	scheduleDueJobsOneByOne(): Promise<number>;
	scheduleSoon(): void;
	remind(slotId: string): Promise<boolean>;
	tellReclaimed(slotIds: string[]): Promise<void>;
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
			auth: "user",
			retryPolicy: { enabled: true },
			params: {},
			async handler(this: SlotsThis, ctx: Ctx) {
				const slots = await this.db.getRepository(Slot).find({
					where: { userId: ctx.meta.user!.id },
					order: { heldAt: "DESC", id: "DESC" },
					take: 500,
				});
				return { slots: slots.map(publicSlot) };
			},
		},

		/** Operators (REPL: `call slots.expire --slotId 12`): expire one HELD slot now and reclaim its unit. */
		expire: {
			visibility: "public",
			auth: "admin",
			params: { slotId: { type: "string", numeric: true, max: 20 } },
			async handler(this: SlotsThis, ctx: Ctx<{ slotId: string }>) {
				const reclaimed = await this.reclaim({ slotId: ctx.params.slotId, evenIfNotDue: true });
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
		[SLOTS_GRANTED](this: SlotsThis) {
			this.scheduleSoon();
		},
		/** A paid slot's jobs can go; they would change nothing anyway (both are conditional). */
		async [SLOT_PAID](this: SlotsThis, ctx: { params: SlotPaid }) {
			await this.agenda?.cancel({ data: { slotId: ctx.params.slotId } }).catch(err => this.logger.warn("cancel jobs:", err.message));
		},
	},

	methods: {
		defineJobs(this: SlotsThis, agenda: AgendaLike) {
			// Both jobs are conditional in the database, so running one twice (Agenda may, past its
			// lock lifetime), early (a node whose clock runs ahead) or after a payment (cancelling is
			// best effort) changes nothing.
			agenda.define("slot.expire", async job => {
				await this.reclaim({ slotId: String(job.attrs.data.slotId), evenIfNotDue: false });
			});
			agenda.define("slot.remind", async job => {
				await this.remind(String(job.attrs.data.slotId));
			});
		},

		/**
		 * The reminder goes out once, and only while the slot is still HELD, unexpired and inside its
		 * reminder window by the database's clock (a job that fires early, or a slot whose expiry moved,
		 * sends nothing; a second of slack covers the job firing on the dot).
		 */
		async remind(this: SlotsThis, slotId: string) {
			const [rows]: [{ email: string; login_id: string; name: string; expires_at: Date; product_id: string }[], number] = await this.db.query(markRemindedSql, [slotId, this.config.slotReminderBeforeSeconds]);
			if (rows.length === 0) return false;
			const r = rows[0];
			await this.notify(
				heldSlotEmail("slotReminder", this.config.locale, { email: r.email, loginId: r.login_id, productName: r.name, expiresAt: r.expires_at, payUrl: `${this.config.publicUrl}/p/${r.product_id}` }, `remind-${slotId}`)
			);
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
		 *
		 * On Agenda's PostgreSQL backend, up to 500 grants at a time in ONE statement
		 * (store/agenda-jobs.ts, the one module that writes Agenda's table, for the versions it
		 * names): pick the due slots, insert both jobs of each as job.save() would, and mark the
		 * slots, atomically; instead of two INSERTs and two NOTIFYs per grant. Agenda finds the rows
		 * on its next scan; only jobs due before that scan are announced on its notification
		 * channel, as save() would. On MongoDB, job by job.
		 */
		async scheduleDueJobs(this: SlotsThis) {
			if (!this.agenda) return 0;
			const reminderSeconds = this.config.slotReminderBeforeSeconds;
			if (!this.agendaPool) return this.scheduleDueJobsOneByOne();
			let total = 0;
			for (;;) {
				const [r]: { slots: number; soon: { id: string; name: string; nextRunAt: string; priority: number }[] }[] = await this.db.query(
					scheduleDueJobsSql,
					[reminderSeconds, this.broker.nodeID, this.config.agendaProcessEveryMs / 1000]
				);
				const channel = this.agendaBackend?.notificationChannel as { state?: string; publish?(n: object): Promise<void> } | undefined;
				if (channel?.publish && channel.state === "connected")
					for (const j of r.soon)
						await channel
							.publish({ jobId: j.id, jobName: j.name, nextRunAt: new Date(j.nextRunAt), priority: j.priority, timestamp: new Date(), source: this.broker.nodeID })
							.catch(err => this.logger.warn("agenda notification:", err.message));
				total += r.slots;
				if (r.slots < 500) return total;
			}
		},

		/** scheduleDueJobs on a backend whose table this service does not know (MongoDB): Agenda's API, job by job. */
		async scheduleDueJobsOneByOne(this: SlotsThis) {
			let total = 0;
			for (;;) {
				const n = await this.db.transaction(async em => {
					const due: { id: string; expires_at: Date }[] = await em.query(dueForJobsSql);
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
					if (due.length) await em.query(markJobsScheduledSql, [due.map(d => d.id)]);
					return due.length;
				});
				total += n;
				if (n < 500) return total;
			}
		},

		/**
		 * Expires overdue HELD slots (the sweep), one slot if it is overdue (its job), or one slot
		 * now, overdue or not (an operator's order). "Overdue" is judged by the database's clock at
		 * the decision (clock_timestamp()), never a node's clock or the transaction's start.
		 */
		async reclaim(this: SlotsThis, one?: { slotId: string; evenIfNotDue: boolean }) {
			const expired = await this.db.transaction(em => expireAndReclaim(em, one));
			const products = [...new Set(expired.map(r => String(r.product_id)))];
			// The allocator takes each product over again (the unit is free), which withdraws the
			// gateways' sold-out flag; a lost message is caught by its own re-check.
			for (const id of products) this.broker.broadcast(PRODUCT_CHANGED, { id, reclaimed: true } satisfies ProductChanged);
			if (expired.length) {
				this.broker.emit(SLOTS_RECLAIMED, { count: expired.length, products } satisfies SlotsReclaimed);
				this.logger.info(`Reclaimed ${expired.length} expired slot(s) of product(s) ${products.join(", ")}.`);
				await this.tellReclaimed(expired.map(r => String(r.id))).catch(err => this.logger.warn("reclaim messages:", err.message));
			}
			return expired.map(r => ({ id: String(r.id), productId: String(r.product_id), userId: String(r.user_id) }));
		},

		/**
		 * After a reclaim: each buyer hears that the slot expired, the operators how many units came
		 * back. Sent after the commit, best effort (a crash in between loses these messages, not a unit).
		 */
		async tellReclaimed(this: SlotsThis, slotIds: string[]) {
			const rows: { id: string; email: string; login_id: string; product_id: string; name: string }[] = await this.db.query(reclaimedFactsSql, [slotIds]);
			const locale = this.config.locale;
			const expired: MessageBody[] = rows.map(r => ({
				...buyerMessages.slotExpired(locale, { loginId: r.login_id, productName: r.name, productUrl: `${this.config.publicUrl}/p/${r.product_id}` }),
				channel: "email",
				recipient: r.email,
				dedupeKey: `expired-${r.id}`,
			}));
			const byProduct = new Map<string, { id: string; name: string; count: number }>();
			for (const r of rows) {
				const p = byProduct.get(String(r.product_id)) ?? { id: String(r.product_id), name: r.name, count: 0 };
				p.count += 1;
				byProduct.set(p.id, p);
			}
			const operators: MessageBody = {
				...operatorMessages.unitsReclaimed(locale, { count: rows.length, products: [...byProduct.values()] }),
				channel: "operators",
				recipient: "",
				dedupeKey: `reclaimed-${createHash("sha1").update([...slotIds].sort().join(",")).digest("hex")}`,
			};
			// One publish for the lot.
			await this.notifyMany([...expired, operators]);
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
