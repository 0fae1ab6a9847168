import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { EntityManager } from "typeorm";
import type { Config } from "../config";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import type { Ctx } from "../lib/context";
import { badRequest, conflict, invalid, notFound, StoreClientError, unauthorized } from "../lib/errors";
import { isId, rowsOf } from "../lib/sql";
import { PaymentProvider, providers } from "./payments/index";

/** Emitted when a slot is paid: its remind and expire jobs can go. */
export const SLOT_PAID_EVENT = "slots.paid";

interface PaymentRow {
	id: string;
	slot_id: string;
	user_id: string;
	method: string;
	amount: string;
	status: "PENDING" | "SUCCESS" | "FAILED";
	failure_reason: string | null;
	details: Record<string, unknown>;
	idempotency_key: string;
}

export interface PublicPayment {
	id: string;
	slotId: string;
	method: string;
	amount: number;
	status: PaymentRow["status"];
	failureReason?: string;
}

const publicPayment = (p: PaymentRow): PublicPayment => ({
	id: String(p.id),
	slotId: String(p.slot_id),
	method: p.method,
	amount: Number(p.amount),
	status: p.status,
	...(p.failure_reason ? { failureReason: p.failure_reason } : {}),
});

const slotExpired = (data?: Record<string, unknown>) => new StoreClientError("The slot expired before it was paid", 410, "SLOT_EXPIRED", data);
const declined = (payment: PublicPayment) => new StoreClientError("The payment was declined", 402, "PAYMENT_DECLINED", { payment });

type PaymentsThis = WithDb & WithNotify & {
	config: Config;
	providers: Map<string, PaymentProvider>;
	/** Each method's own fields, checked with Moleculer's validator. */
	fieldChecks: Map<string, (o: unknown) => true | unknown[]>;
	ownPayment(em: EntityManager, id: string, userId: string, lock?: boolean): Promise<PaymentRow>;
	fail(em: EntityManager, id: string, reason: string): Promise<PaymentRow>;
	tell(p: PaymentRow, kind: "payment.receipt" | "payment.failed"): Promise<void>;
};

function buyerOf(ctx: Ctx<unknown>): string {
	if (!ctx.meta.user) throw unauthorized();
	return ctx.meta.user.id;
}

/**
 * Purchases: PENDING -> SUCCESS (slot PAID) or FAILED. The provider is called outside any
 * transaction; then one transaction pays the slot only if it is still HELD and unexpired, the same
 * row the expiry updates only if HELD and expired, so exactly one of them wins.
 */
const PaymentsService: ServiceSchema<ServiceSettingSchema, PaymentsThis> = {
	name: "payments",
	mixins: [ConfigMixin(), DbMixin(), NotifyMixin()],

	actions: {
		initiate: {
			params: {
				$$strict: false,
				id: { type: "string", max: 40 },
				method: { type: "enum", values: ["card", "points", "easypay"] },
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string; method: string } & Record<string, unknown>>) {
				const userId = buyerOf(ctx);
				const key = (ctx.meta as { idempotencyKey?: string }).idempotencyKey;
				if (!key || key.length > 100) throw badRequest("An Idempotency-Key header (1 to 100 characters) is required", "IDEMPOTENCY_KEY_REQUIRED");
				const provider = this.providers.get(ctx.params.method)!;
				const fields = { ...ctx.params } as Record<string, unknown>;
				const verdict = this.fieldChecks.get(provider.method)!(fields);
				if (verdict !== true) throw invalid(`Invalid fields for ${provider.method}`, { fields: (verdict as { field: string; message: string }[]).map(v => ({ field: v.field, message: v.message })) } as never);
				if (!isId(ctx.params.id)) throw notFound("Slot", "SLOT_NOT_FOUND");

				const payment = await this.db.transaction(async em => {
					const [again] = (await em.query(`SELECT * FROM payments WHERE user_id = $1 AND idempotency_key = $2`, [userId, key])) as PaymentRow[];
					if (again) {
						if (String(again.slot_id) !== ctx.params.id)
							throw conflict("This Idempotency-Key was used for another slot", "IDEMPOTENCY_KEY_REUSED");
						return again;
					}
					const [slot] = (await em.query(
						`SELECT s.id, s.status, s.expires_at <= now() AS past, p.price FROM slots s JOIN products p ON p.id = s.product_id
						 WHERE s.id = $1 AND s.user_id = $2`,
						[ctx.params.id, userId]
					)) as { id: string; status: string; past: boolean; price: string }[];
					// Someone else's slot is not found, as far as this buyer can tell.
					if (!slot) throw notFound("Slot", "SLOT_NOT_FOUND");
					if (slot.status === "EXPIRED" || (slot.status === "HELD" && slot.past)) throw slotExpired();
					if (slot.status !== "HELD") throw conflict("This slot is not held (already paid)", "SLOT_NOT_HELD");
					const inserted = rowsOf<PaymentRow>(
						await em.query(
							`INSERT INTO payments (slot_id, user_id, method, amount, details, idempotency_key)
							 VALUES ($1, $2, $3, $4, $5, $6)
							 ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING *`,
							[slot.id, userId, provider.method, slot.price, JSON.stringify(provider.details(fields)), key]
						)
					);
					if (inserted.length) return inserted[0];
					// The same key raced in: the other request's payment is this one.
					return ((await em.query(`SELECT * FROM payments WHERE user_id = $1 AND idempotency_key = $2`, [userId, key])) as PaymentRow[])[0];
				});
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/payments/${payment.id}`;
				return { payment: publicPayment(payment) };
			},
		},

		confirm: {
			params: { id: { type: "string", max: 40 } },
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string }>) {
				const userId = buyerOf(ctx);
				const before = await this.ownPayment(this.db.manager, ctx.params.id, userId);
				if (before.status === "SUCCESS") return { payment: publicPayment(before) };
				if (before.status === "FAILED")
					throw conflict("This payment already failed; start a new one", "PAYMENT_FAILED", { payment: publicPayment(before) });

				const [{ points }] = (await this.db.query(`SELECT points FROM users WHERE id = $1`, [userId])) as { points: number }[];
				const provider = this.providers.get(before.method)!;
				// The gateway is called outside any transaction: no row lock waits on the network.
				const charge = await provider.charge({ paymentId: String(before.id), userId, amount: Number(before.amount), details: before.details, pointsBalance: points });

				const { payment, error, productId } = await this.db.transaction(async (em): Promise<{ payment: PaymentRow; error: string | null; productId?: string }> => {
					const p = await this.ownPayment(em, ctx.params.id, userId, true);
					if (p.status !== "PENDING") return { payment: p, error: null }; // a concurrent confirm decided it
					if (!charge.approved) return { payment: await this.fail(em, p.id, "PAYMENT_DECLINED"), error: "DECLINED" as const };
					const paid = rowsOf<{ id: string; product_id: string }>(
						await em.query(
							`UPDATE slots SET status = 'PAID', paid_at = now() WHERE id = $1 AND status = 'HELD' AND expires_at > now() RETURNING id, product_id`,
							[p.slot_id]
						)
					);
					if (paid.length === 0) {
						// The expiry won the race (a real gateway would void the charge here).
						const [slot] = (await em.query(`SELECT status FROM slots WHERE id = $1`, [p.slot_id])) as { status: string }[];
						const reason = slot.status === "PAID" ? "SLOT_NOT_HELD" : "SLOT_EXPIRED";
						return { payment: await this.fail(em, p.id, reason), error: reason };
					}
					if (p.method === "points") {
						// Points are whole: a price with cents costs the next whole point. Another
						// points payment may have spent the balance since the check: then it is a decline.
						const spent = rowsOf(
							await em.query(`UPDATE users SET points = points - ceil($2::numeric)::int WHERE id = $1 AND points >= ceil($2::numeric) RETURNING points`, [
								userId,
								p.amount,
							])
						);
						if (spent.length === 0) {
							await em.query(`UPDATE slots SET status = 'HELD', paid_at = NULL WHERE id = $1`, [p.slot_id]);
							return { payment: await this.fail(em, p.id, "PAYMENT_DECLINED"), error: "DECLINED" as const };
						}
					}
					const [done] = rowsOf<PaymentRow>(await em.query(`UPDATE payments SET status = 'SUCCESS', updated_at = now() WHERE id = $1 RETURNING *`, [p.id]));
					return { payment: done, error: null, productId: String(paid[0].product_id) };
				});

				if (error === null && payment.status === "SUCCESS") {
					// Broadcast: the slots service drops the jobs, the product's actor (wherever it runs) marks it PAID.
					this.broker.broadcast(SLOT_PAID_EVENT, { slotId: String(payment.slot_id), productId });
					await this.tell(payment, "payment.receipt");
					return { payment: publicPayment(payment) };
				}
				if (error) await this.tell(payment, "payment.failed");
				const view = publicPayment(payment);
				if (error === "DECLINED") throw declined(view);
				if (error === "SLOT_EXPIRED") throw slotExpired({ payment: view });
				if (error === "SLOT_NOT_HELD") throw conflict("This slot was paid by another payment", "SLOT_NOT_HELD", { payment: view });
				// A concurrent confirm decided it first: answer with what it decided.
				if (view.status === "SUCCESS") return { payment: view };
				throw conflict("This payment already failed; start a new one", "PAYMENT_FAILED", { payment: view });
			},
		},

		get: {
			params: { id: { type: "string", max: 40 } },
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string }>) {
				return { payment: publicPayment(await this.ownPayment(this.db.manager, ctx.params.id, buyerOf(ctx))) };
			},
		},

		mine: {
			params: {},
			async handler(this: PaymentsThis, ctx: Ctx) {
				const rows = (await this.db.query(`SELECT * FROM payments WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 500`, [buyerOf(ctx)])) as PaymentRow[];
				return { payments: rows.map(publicPayment) };
			},
		},
	},

	methods: {
		async ownPayment(this: PaymentsThis, em: EntityManager, id: string, userId: string, lock = false) {
			if (!isId(id)) throw notFound("Payment", "PAYMENT_NOT_FOUND");
			const [p] = (await em.query(`SELECT * FROM payments WHERE id = $1 AND user_id = $2 ${lock ? "FOR UPDATE" : ""}`, [id, userId])) as PaymentRow[];
			if (!p) throw notFound("Payment", "PAYMENT_NOT_FOUND");
			return p;
		},

		async fail(this: PaymentsThis, em: EntityManager, id: string, reason: string) {
			const [p] = rowsOf<PaymentRow>(
				await em.query(`UPDATE payments SET status = 'FAILED', failure_reason = $2, updated_at = now() WHERE id = $1 RETURNING *`, [id, reason])
			);
			return p;
		},

		/** The buyer is told the result either way: a receipt, or why it failed. */
		async tell(this: PaymentsThis, p: PaymentRow, kind: "payment.receipt" | "payment.failed") {
			const [who] = (await this.db.query(
				`SELECT u.email, u.login_id, pr.name FROM users u JOIN slots s ON s.id = $2 JOIN products pr ON pr.id = s.product_id WHERE u.id = $1`,
				[p.user_id, p.slot_id]
			)) as { email: string; login_id: string; name: string }[];
			const ok = kind === "payment.receipt";
			await this.notify({
				kind,
				channel: "email",
				recipient: who.email,
				subject: ok ? `Receipt: ${who.name}` : `Your payment for ${who.name} failed`,
				text: ok
					? `Hello ${who.login_id}, you paid ${Number(p.amount)} by ${p.method} for ${who.name}. Payment ${p.id}.`
					: `Hello ${who.login_id}, your payment ${p.id} for ${who.name} failed (${p.failure_reason}).` +
						(p.failure_reason === "PAYMENT_DECLINED" ? " You can try again while your slot is held." : ""),
				dedupeKey: `${kind}-${p.id}`,
			});
		},
	},

	created(this: PaymentsThis) {
		this.providers = providers(this.config.paymentLatencyMs);
		const validator = this.broker.validator!;
		this.fieldChecks = new Map(
			[...this.providers.values()].map(p => [p.method, validator.compile({ $$strict: "remove", ...p.fields } as never) as (o: unknown) => true | unknown[]])
		);
	},
};

export default PaymentsService;
