import { createHash } from "node:crypto";
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { channelOf, Config, mailboxOnly, operatorChannels, operatorVariables } from "../config";
import { MessageBatch, MessageBody, NOTIFICATIONS_CHANNEL, NOTIFIER_GROUP } from "../contracts";
import { AgendaLike, AgendaMixin, WithAgenda } from "../mixins/agenda.mixin";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import type { ChannelBroker } from "../lib/channels";
import { streamNameOf } from "../lib/channels";
import type { Ctx } from "../lib/context";
import { forbidden, invalid, notFound } from "../lib/errors";
import { GroupWriter } from "../lib/group-writer";
import { operatorMessages } from "../lib/messages";
import { isId } from "../lib/sql";
import { ensureNotifierMetrics, METRICS } from "../lib/store-metrics";
import { backoffMs } from "./notifier/backoff";
import * as log from "../store/deliveries";
import { DeliveryRow, NewDelivery } from "../store/deliveries";
import { TokenBucket } from "./notifier/token-bucket";
import { CHANNEL_NAMES, DeliveryError, Transport, transportsFor } from "./notifier/transports";
import { hideSealed, unsealText } from "../lib/sealed";

const PAGE_SIZE = 50;
const JOB = "notification.due";
/** Tries a message may spend on a provider's "later" answers (throttle, quota) before it is FAILED. */
const LATER_MAX_ATTEMPTS = 100;
const GAUGE_EVERY_MS = 5_000;
/** Deliveries taken in before the first refresh of the log's planner statistics. */
const ANALYZE_FIRST_AT = 1_000;
const PRUNE_EVERY_MS = 60 * 60_000;

type NotifierThis = WithDb & WithAgenda & WithNotify & {
	config: Config;
	transports: Map<string, Transport>;
	/** Each rate-limited channel's token bucket (NOTIFIER_<CHANNEL>_PER_MINUTE), taken before every try. */
	buckets: Map<string, TokenBucket>;
	/** This node's name in the log's `worker` column (its leases). */
	worker: string;
	/** SENT marks, group-committed: a burst of deliveries (a sale's "slot granted" mails) is a few UPDATEs, not one each. */
	sentMarks: GroupWriter<string>;
	/** Deliveries this node took in, and the count at which it next refreshes the log's statistics. */
	takenIn: number;
	analyzeAt: number;
	running: boolean;
	/** The worker loop: `tick` runs one pass at a time; `wake` asks for another pass soon. */
	ticking: Promise<void> | null;
	again: boolean;
	pollTimer: NodeJS.Timeout | null;
	gaugeTimer: NodeJS.Timeout | null;
	pruneTimer: NodeJS.Timeout | null;
	takeIn(batch: MessageBatch): Promise<number>;
	wake(): void;
	tick(): Promise<void>;
	deliver(row: DeliveryRow): Promise<DeliveryRow | null>;
	readGauges(): Promise<void>;
	operatorChannels(): string[];
	listed(row: DeliveryRow): ReturnType<typeof log.wireDelivery>;
};

/**
 * The notifier: takes message bodies off the durable channel into the delivery log, and delivers
 * them from there: e-mail (SMTP, or the local mailbox), Slack, Discord; now or at `sendAt`
 * (an Agenda job); retried with backoff and jitter until `NOTIFIER_MAX_ATTEMPTS`, then FAILED and
 * the operators told. It knows nothing of the sale: it delivers what it is given, once per key.
 */
const NotifierService: ServiceSchema<ServiceSettingSchema, NotifierThis> = {
	name: "notifier",
	mixins: [ConfigMixin(), DbMixin(), AgendaMixin(), NotifyMixin()],

	actions: {
		/** `GET /api/admin/notifications?status=&channel=&page=`: the log, newest first, 50 a page. */
		list: {
			auth: "admin",
			params: {
				$$strict: "remove",
				status: { type: "enum", values: ["PENDING", "SENT", "FAILED", "CANCELLED"], optional: true },
				channel: { type: "enum", values: [...CHANNEL_NAMES, "operators"], optional: true },
				kind: { type: "string", max: 64, optional: true },
				recipient: { type: "string", max: 320, optional: true },
				page: { type: "number", integer: true, positive: true, convert: true, optional: true, default: 1 },
			},
			async handler(this: NotifierThis, ctx: Ctx<{ status?: string; channel?: string; kind?: string; recipient?: string; page: number }>) {
				const { page, ...filter } = ctx.params;
				const { rows, total } = await log.listDeliveries(this.db, { ...filter, limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE });
				return { notifications: rows.map(r => this.listed(r)), page, pageSize: PAGE_SIZE, total };
			},
		},

		/** `POST /api/admin/notifications/:id/resend`: goes out again now, whatever its status, with fresh tries. */
		resend: {
			auth: "admin",
			params: { $$strict: "remove", id: { type: "string", max: 20 } },
			async handler(this: NotifierThis, ctx: Ctx<{ id: string }>) {
				const row = isId(ctx.params.id) ? await log.resend(this.db, ctx.params.id) : null;
				if (!row) throw notFound("Notification", "NOTIFICATION_NOT_FOUND");
				this.wake();
				ctx.meta.$statusCode = 202;
				return { notification: this.listed(row) };
			},
		},

		/**
		 * `POST /api/admin/notifications/resend-failed` (REPL `resend-failed`): every FAILED delivery
		 * of a kind (or all kinds), created in [since, until), goes out again with fresh tries, at
		 * the channel's pace. Returns how many.
		 */
		resendFailed: {
			auth: "admin",
			params: {
				$$strict: "remove",
				kind: { type: "string", min: 1, max: 64, optional: true },
				channel: { type: "enum", values: [...CHANNEL_NAMES], optional: true },
				since: { type: "date", convert: true, optional: true },
				until: { type: "date", convert: true, optional: true },
			},
			async handler(this: NotifierThis, ctx: Ctx<{ kind?: string; channel?: string; since?: Date; until?: Date }>) {
				const { since, until } = ctx.params;
				if ((since && Number.isNaN(since.getTime())) || (until && Number.isNaN(until.getTime())))
					throw invalid("'since' and 'until' must be dates (ISO 8601).");
				if (since && until && since >= until) throw invalid("'since' must be before 'until'.");
				const ids = await log.resendFailed(this.db, ctx.params);
				if (ids.length) this.wake();
				ctx.meta.$statusCode = 202;
				return { resent: ids.length, ids };
			},
		},

		/**
		 * Cancels a message not sent yet: by delivery `id`, or by the `dedupeKey` it was published
		 * with (all its deliveries; a cancel that arrives before its message still stops it).
		 * REPL: `call notifier.cancel --dedupeKey sale-opened-12`.
		 */
		cancel: {
			auth: "admin",
			params: { $$strict: "remove", id: { type: "string", max: 20, optional: true }, dedupeKey: { type: "string", min: 1, max: 200, optional: true } },
			async handler(this: NotifierThis, ctx: Ctx<{ id?: string; dedupeKey?: string }>) {
				const { id, dedupeKey } = ctx.params;
				if (!id && !dedupeKey) throw notFound("Notification", "NOTIFICATION_NOT_FOUND");
				if (id && !isId(id)) throw notFound("Notification", "NOTIFICATION_NOT_FOUND");
				const ids = await log.cancelDeliveries(this.db, id ? { id } : { dedupeKey });
				// Best effort: the job finds its row CANCELLED anyway.
				for (const deliveryId of ids) await this.agenda?.cancel({ name: JOB, data: { deliveryId } }).catch(() => undefined);
				return { cancelled: ids.length, ids };
			},
		},

		/** Drops finished deliveries older than NOTIFIER_RETENTION_DAYS now (it also runs hourly). REPL: `call notifier.prune`. */
		prune: {
			visibility: "public",
			params: {},
			async handler(this: NotifierThis) {
				return { pruned: await log.prune(this.db, this.config.notifier.retentionDays) };
			},
		},

		/** One pass of the worker now (REPL, tests). */
		flush: {
			visibility: "public",
			params: {},
			async handler(this: NotifierThis) {
				await this.tick();
				return { ok: true };
			},
		},
	},

	channels: {
		// Defined for real in `created` (the consumer group's name carries the NAMESPACE); this
		// placeholder only documents where the intake is.
	},

	methods: {
		defineJobs(this: NotifierThis, agenda: AgendaLike) {
			// A scheduled delivery's time came: due now. Conditional, so running twice changes nothing.
			agenda.define(JOB, async job => {
				if (await log.markDue(this.db, String(job.attrs.data.deliveryId))) this.wake();
			});
		},

		/**
		 * The intake: a batch off the channel goes into the delivery log in one statement (dedupe
		 * by key and channel), scheduled ones get their Agenda job, and the worker is woken. Nothing
		 * is sent here: a slow SMTP server never holds the channel.
		 */
		async takeIn(this: NotifierThis, batch: MessageBatch): Promise<number> {
			const items: NewDelivery[] = [];
			for (const body of Array.isArray(batch?.messages) ? batch.messages : []) {
				const m = log.normalize(body as Partial<MessageBody>);
				if (!m.dedupeKey) m.dedupeKey = `seq-${Date.now()}-${Math.random().toString(36).slice(2)}`;
				if (m.channel !== "operators") {
					items.push({ ...m, failedWith: null });
					continue;
				}
				// One delivery per configured operators' channel, each tried and logged on its own.
				const targets = this.operatorChannels();
				if (targets.length === 0) items.push({ ...m, failedWith: `no operators' channel configured (${operatorVariables(this.config)})` });
				for (const channel of targets) items.push({ ...m, channel, failedWith: null });
			}
			const inserted = await log.insertDeliveries(this.db, items);
			this.takenIn += inserted.length;
			if (this.takenIn >= this.analyzeAt) {
				// At 1,000, 2,000, 4,000... taken in: a burst gets fresh statistics within its first
				// thousand rows, and a node that runs for months rarely analyzes (autovacuum does).
				this.analyzeAt = this.takenIn * 2;
				log.refreshStatistics(this.db).catch(err => this.logger.warn("notifier analyze:", err.message));
			}
			for (const r of inserted) {
				if (r.next_attempt_at || !r.send_at) continue;
				const job = this.agenda.create(JOB, { deliveryId: String(r.id) });
				job.schedule(new Date(r.send_at));
				await job.save();
			}
			if (inserted.some(r => r.next_attempt_at)) this.wake();
			return inserted.length;
		},

		operatorChannels(this: NotifierThis): string[] {
			return operatorChannels(this.config).filter(c => this.transports.has(c));
		},

		wake(this: NotifierThis) {
			if (!this.running) return;
			if (this.ticking) {
				this.again = true;
				return;
			}
			this.ticking = this.tick()
				.catch(err => this.logger.warn("notifier:", (err as Error).message))
				.finally(() => {
					this.ticking = null;
					if (this.again) {
						this.again = false;
						setImmediate(() => this.wake());
					}
				});
		},

		/** Takes due deliveries, `concurrency` at a time, until none is due; tells the operators what finally failed. */
		async tick(this: NotifierThis) {
			const failed: DeliveryRow[] = [];
			while (this.running) {
				const rows = await log.takeDue(this.db, this.worker, this.config.notifier.concurrency, this.config.notifier.leaseMs);
				if (rows.length === 0) break;
				const outcomes = await Promise.all(rows.map(r => this.deliver(r)));
				for (const f of outcomes) if (f) failed.push(f);
			}
			// Operators hear of buyers' messages that failed; a failed operators' message is not
			// reported to the operators' channels (that could go round for ever).
			const report = failed.filter(f => f.channel === "email");
			if (report.length)
				await this.notifyOperators(
					operatorMessages.deliveriesFailed(this.config.locale, {
						failures: report.map(f => ({ id: String(f.id), kind: f.kind, channel: f.channel, recipient: f.recipient, attempts: f.attempts, lastError: f.last_error })),
					}),
					{ dedupeKey: `failed-${createHash("sha1").update(report.map(f => f.id).join(",")).digest("hex")}` }
				);
		},

		/**
		 * A delivery as admins see it: sealed parts hidden, except in the local mailbox (no SMTP_URL),
		 * whose whole point is reading the mail from the log (the start-up log says so).
		 */
		listed(this: NotifierThis, row: DeliveryRow) {
			const d = log.wireDelivery(row);
			d.text = mailboxOnly(this.config) ? unsealText(this.config.nodeSecret, d.text) : hideSealed(d.text);
			return d;
		},

		/** One try of one delivery, its outcome written at once. Returns the row if it FAILED for good. */
		async deliver(this: NotifierThis, row: DeliveryRow): Promise<DeliveryRow | null> {
			const id = String(row.id);
			const transport = this.transports.get(row.channel);
			try {
				if (!transport) {
					const known = channelOf(this.config, row.channel);
					throw new DeliveryError(known ? `no ${row.channel} configuration on this node (${known.variables.join(", ")})` : `unknown channel "${row.channel}"`, true);
				}
				await this.buckets.get(row.channel)?.take();
				// Sealed parts (a reset link) are opened only here, on their way to the recipient (lib/sealed.ts).
				await transport.send({ id, kind: row.kind, channel: row.channel, recipient: row.recipient, subject: row.subject, text: unsealText(this.config.nodeSecret, row.text) });
			} catch (err) {
				const e = err as DeliveryError;
				const message = e?.message ?? String(err);
				// A provider's "later" (throttle, quota) is no fault of the message: it does not use up
				// its tries (up to LATER_MAX_ATTEMPTS, so a quota that never lifts still ends).
				const last = e?.permanent || row.attempts >= (e?.later ? LATER_MAX_ATTEMPTS : this.config.notifier.maxAttempts);
				const wait = e?.retryAfterMs ?? backoffMs(e?.later ? Math.min(row.attempts, 4) : row.attempts, this.config.notifier.backoffBaseMs, this.config.notifier.backoffMaxMs);
				// The whole channel slows down, not just this message: the next sends would get the same answer.
				if (e?.later) this.buckets.get(row.channel)?.holdFor(wait);
				const failed = await log.markTryFailed(this.db, id, this.worker, message, last ? null : new Date(Date.now() + wait));
				this.broker.metrics.increment(METRICS.deliveries, { channel: row.channel, status: failed ? "FAILED" : "RETRY" });
				if (failed) this.logger.warn(`Delivery ${id} (${row.kind} by ${row.channel}) FAILED after ${row.attempts} tries: ${message}`);
				else setTimeout(() => this.wake(), wait + 10).unref();
				return failed;
			}
			await this.sentMarks.add(id);
			this.broker.metrics.increment(METRICS.deliveries, { channel: row.channel, status: "SENT" });
			const dueAt = new Date(row.send_at ?? row.created_at).getTime();
			this.broker.metrics.observe(METRICS.deliverySeconds, Math.max(0, Date.now() - dueAt) / 1000, { channel: row.channel });
			return null;
		},

		/** The channel's consumer lag, from JetStream itself, and the log's backlog. */
		async readGauges(this: NotifierThis) {
			const b = await log.backlog(this.db);
			this.broker.metrics.set(METRICS.backlog, b.due, { state: "due" });
			this.broker.metrics.set(METRICS.backlog, b.later, { state: "scheduled" });
			const jsm = (this.broker as ChannelBroker).channelAdapter?.manager;
			if (!jsm) return;
			const info = await jsm.consumers.info(streamNameOf(this.broker.namespace), `${this.broker.namespace ? `${this.broker.namespace}_` : ""}${NOTIFIER_GROUP}`);
			this.broker.metrics.set(METRICS.consumerPending, info.num_pending);
			this.broker.metrics.set(METRICS.consumerAckPending, info.num_ack_pending);
		},
	},

	created(this: NotifierThis) {
		const ns = this.broker.namespace;
		// The consumer group (JetStream durable consumer) is named with the NAMESPACE, like the stream.
		this.schema.channels = {
			[NOTIFICATIONS_CHANNEL]: {
				group: ns ? `${ns}.${NOTIFIER_GROUP}` : NOTIFIER_GROUP,
				maxInFlight: this.config.notifier.maxInFlight,
				async handler(this: NotifierThis, batch: MessageBatch, raw?: { nak?(ms?: number): void }) {
					try {
						await this.takeIn(batch);
					} catch (err) {
						// The log could not take it (database down): the message comes back later, not at once.
						this.logger.warn("notifier intake:", (err as Error).message);
						if (typeof raw?.nak === "function") return raw.nak(2_000);
						throw err;
					}
				},
			},
		};
		this.transports = transportsFor(this.config);
		this.buckets = new Map();
		// Only channels sent to a provider (the local mailbox has none to spare), at a pace other than "no limit".
		for (const c of this.config.channels) if (c.configured && c.pace) this.buckets.set(c.name, new TokenBucket(c.pace.perMinute, c.pace.burst));
		this.worker = this.broker.nodeID;
		this.sentMarks = new GroupWriter(ids => log.markSent(this.db, ids, this.worker));
		this.takenIn = 0;
		this.analyzeAt = ANALYZE_FIRST_AT;
		this.running = false;
		this.ticking = null;
		this.again = false;
		ensureNotifierMetrics(this.broker);
	},

	async started(this: NotifierThis) {
		// (The mixins have opened the database and started Agenda by now.)
		const released = await log.releaseLeases(this.db, this.worker);
		if (released) this.logger.info(`Took back ${released} delivery(ies) this node had in flight when it stopped.`);
		for (const [channel, t] of this.transports) this.logger.info(`Notifications by ${channel} go to ${t.describe()}.`);
		if (mailboxOnly(this.config))
			this.logger.warn("No SMTP_URL: e-mail stays in the local mailbox, and every admin can read it there, password-reset links included (anyone with an admin account can take over any account). Set SMTP_URL for a store with real users.");
		if (this.operatorChannels().length === 0)
			this.logger.info(`No operators' channel (${operatorVariables(this.config)}): operators' messages are logged as FAILED.`);
		this.running = true;
		const poll = () => {
			this.wake();
			this.pollTimer = setTimeout(poll, this.config.notifier.pollMs);
		};
		this.pollTimer = setTimeout(poll, 0);
		const gauges = () => {
			this.readGauges()
				.catch(err => this.logger.debug("notifier gauges:", err.message))
				.finally(() => this.running && (this.gaugeTimer = setTimeout(gauges, GAUGE_EVERY_MS)));
		};
		this.gaugeTimer = setTimeout(gauges, 1_000);
		const pruneOld = () => {
			log.prune(this.db, this.config.notifier.retentionDays)
				.then(n => n && this.logger.info(`Pruned ${n} finished delivery(ies) older than ${this.config.notifier.retentionDays} days.`))
				.catch(err => this.logger.warn("notifier prune:", err.message))
				.finally(() => this.running && (this.pruneTimer = setTimeout(pruneOld, PRUNE_EVERY_MS)));
		};
		this.pruneTimer = setTimeout(pruneOld, 10_000);
	},

	async stopped(this: NotifierThis) {
		this.running = false;
		for (const t of [this.pollTimer, this.gaugeTimer, this.pruneTimer]) if (t) clearTimeout(t);
		// A try in flight finishes (and is written) before the database closes.
		await this.ticking;
		for (const t of this.transports.values()) await t.close?.();
	},
};

export default NotifierService;
