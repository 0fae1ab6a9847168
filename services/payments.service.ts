import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { EntityManager } from "typeorm";
import type { Config } from "../config";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import { buyerMessages } from "../lib/messages";
import type { Ctx } from "../lib/context";
import { badRequest, conflict, invalid, notFound, StoreClientError, unauthorized } from "../lib/errors";
import { createHmac } from "node:crypto";
import { isId } from "../lib/sql";
import { methodName, PAYMENT_METHODS, PaymentProvider, providers } from "./payments/index";
import * as sql from "../store/payments";
import type { PaymentRow } from "../store/payments";
import * as slots from "../store/slots";
import * as users from "../store/users";
import { SLOT_PAID, SlotPaid } from "../contracts";


/** What became of a failed payment's charge: none made, made and cancelled, or made and still to refund. */
type ChargeOutcome = "none" | "voided" | "refund_pending";

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

type PaymentsThis = WithDb & WithNotify & {
	config: Config;
	/** The key of request hashes (requestHash). */
	hashKey: Buffer;
	providers: Map<string, PaymentProvider>;
	/** Each method's own fields, checked with Moleculer's validator. */
	fieldChecks: Map<string, (o: unknown) => true | unknown[]>;
	ownPayment(em: EntityManager, id: string, userId: string, lock?: boolean): Promise<PaymentRow>;
	tell(p: PaymentRow, kind: "payment.receipt" | "payment.failed", charge?: ChargeOutcome): Promise<void>;
	voidCharge(provider: PaymentProvider, key: string, paymentId: string): Promise<ChargeOutcome>;
};

/**
 * What an Idempotency-Key stands for: the slot, the method and the method's own fields. A replay
 * with another body under the same key is a different request, not a repeat.
 *
 * Keyed (HMAC-SHA256 with a key derived from the nodes' secret, never stored): the fields hold the
 * full card number, and with the slot id and last4 in the same row an unkeyed SHA-256 could be
 * brute-forced from a copy of the table (issue 22, point 4).
 */
export function requestHash(key: Buffer | string, slotId: string, method: string, fields: Record<string, unknown>): string {
	const sorted = Object.keys(fields).sort().map(k => [k, fields[k]]);
	return createHmac("sha256", key).update(JSON.stringify([slotId, method, sorted])).digest("hex");
}

/** The request-hash key: labelled, so it never equals the secret it comes from. */
export const requestHashKey = (nodeSecret: string) => createHmac("sha256", nodeSecret).update("dopamine payment request hash v1").digest();

/** PENDING payments one slot may have at once (a buyer switching methods needs a few, not thousands). */
export const PENDING_PER_SLOT = 5;

const keyReused = () =>
	conflict("This Idempotency-Key was used for another request (another slot or another body)", "IDEMPOTENCY_KEY_REUSED");

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
		/** The methods a buyer can choose, for the page (public: the product page shows them before login). */
		methods: {
			retryPolicy: { enabled: true },
			params: {},
			handler() {
				return { methods: PAYMENT_METHODS };
			},
		},

		initiate: {
			auth: "user",
			params: {
				$$strict: false,
				id: { type: "string", max: 40 },
				method: { type: "enum", values: PAYMENT_METHODS.map(m => m.method) },
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

				const hash = requestHash(this.hashKey, ctx.params.id, provider.method, fields);
				const payment = await this.db.transaction(async em => {
					const again = await sql.paymentByKey(em, userId, key);
					if (again) {
						if (again.request_hash !== hash) throw keyReused();
						return again;
					}
					const slot = await slots.slotToPay(em, ctx.params.id, userId);
					// Someone else's slot is not found, as far as this buyer can tell.
					if (!slot) throw notFound("Slot", "SLOT_NOT_FOUND");
					if (slot.status === "EXPIRED" || (slot.status === "HELD" && slot.past)) throw slotExpired();
					if (slot.status !== "HELD") throw conflict("This slot is not held (already paid)", "SLOT_NOT_HELD");
					// Each new Idempotency-Key made a row: a loop of them filled the table for one slot.
					// Counted with the slot row locked: two initiates for one slot count one after the other.
					await slots.lockSlot(em, slot.id);
					if ((await sql.pendingOfSlot(em, slot.id)) >= PENDING_PER_SLOT)
						throw conflict(`This slot already has ${PENDING_PER_SLOT} payments waiting to be confirmed: confirm one of them`, "TOO_MANY_PENDING_PAYMENTS");
					const inserted = await sql.insertPayment(em, {
						slotId: slot.id,
						userId,
						method: provider.method,
						amount: slot.price,
						details: provider.details(fields),
						key,
						requestHash: hash,
					});
					if (inserted) return inserted;
					// The same key raced in: the other request's payment is this one, if it asked the same.
					const raced = (await sql.paymentByKey(em, userId, key))!;
					if (raced.request_hash !== hash) throw keyReused();
					return raced;
				});
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/payments/${payment.id}`;
				return { payment: publicPayment(payment) };
			},
		},

		confirm: {
			auth: "user",
			params: { id: { type: "string", max: 40 } },
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string }>) {
				const userId = buyerOf(ctx);
				const before = await this.ownPayment(this.db.manager, ctx.params.id, userId);
				if (before.status === "SUCCESS") return { payment: publicPayment(before) };
				if (before.status === "FAILED")
					throw conflict("This payment already failed; start a new one", "PAYMENT_FAILED", { payment: publicPayment(before) });

				const points = await users.pointsOf(this.db, userId);
				const provider = this.providers.get(before.method)!;
				// The gateway is called outside any transaction (no row lock waits on the network), keyed
				// by the payment: a second confirm (a repeat, a race) is answered without a second charge.
				const charge = await provider.charge({
					idempotencyKey: `payment-${before.id}`,
					paymentId: String(before.id),
					userId,
					amount: Number(before.amount),
					details: before.details,
					pointsBalance: points,
				});

				const { payment, error, productId } = await this.db.transaction(async (em): Promise<{ payment: PaymentRow; error: string | null; productId?: string }> => {
					const p = await this.ownPayment(em, ctx.params.id, userId, true);
					if (p.status !== "PENDING") return { payment: p, error: null }; // a concurrent confirm decided it
					if (!charge.approved) return { payment: await sql.markFailed(em, p.id, "PAYMENT_DECLINED"), error: "DECLINED" as const };
					const paid = await slots.paySlot(em, p.slot_id);
					if (!paid) {
						// The expiry won the race (a real gateway would void the charge here).
						const reason = (await slots.slotStatusOf(em, p.slot_id)) === "PAID" ? "SLOT_NOT_HELD" : "SLOT_EXPIRED";
						return { payment: await sql.markFailed(em, p.id, reason), error: reason };
					}
					// Another points payment may have spent the balance since the check: then it is a decline.
					if (provider.spendsPoints && !(await users.spendPoints(em, userId, p.amount))) {
						await slots.unpaySlot(em, p.slot_id);
						return { payment: await sql.markFailed(em, p.id, "PAYMENT_DECLINED"), error: "DECLINED" as const };
					}
					return { payment: await sql.markSucceeded(em, p.id), error: null, productId: String(paid.product_id) };
				});

				// Charged for a slot that could not be paid (expired meanwhile, or paid by another payment):
				// the charge is cancelled at the gateway, and the buyer told so. (Points move only in the
				// transaction above, which did not spend them: nothing to cancel.)
				let charge_: ChargeOutcome = "none";
				if (charge.approved && error !== null && !provider.spendsPoints) charge_ = await this.voidCharge(provider, `payment-${before.id}`, String(before.id));
				if (error === null && payment.status === "SUCCESS") {
					// Broadcast: the slots service drops the jobs, the product's actor (wherever it runs) marks it PAID.
					this.broker.broadcast(SLOT_PAID, { slotId: String(payment.slot_id), productId } satisfies SlotPaid);
					await this.tell(payment, "payment.receipt");
					return { payment: publicPayment(payment) };
				}
				if (error) await this.tell(payment, "payment.failed", charge_);
				const view = publicPayment(payment);
				const chargeData = charge_ === "none" ? {} : { charge: charge_ === "voided" ? "VOIDED" : "REFUND_PENDING" };
				const chargeWords = charge_ === "voided" ? "; the charge was cancelled" : charge_ === "refund_pending" ? "; the charge will be refunded" : "";
				if (error === "DECLINED") throw new StoreClientError(`The payment was declined${chargeWords}`, 402, "PAYMENT_DECLINED", { payment: view, ...chargeData });
				if (error === "SLOT_EXPIRED") throw new StoreClientError(`The slot expired before it was paid${chargeWords}`, 410, "SLOT_EXPIRED", { payment: view, ...chargeData });
				if (error === "SLOT_NOT_HELD") throw conflict(`This slot was paid by another payment${chargeWords}`, "SLOT_NOT_HELD", { payment: view, ...chargeData });
				// A concurrent confirm decided it first: answer with what it decided.
				if (view.status === "SUCCESS") return { payment: view };
				throw conflict("This payment already failed; start a new one", "PAYMENT_FAILED", { payment: view });
			},
		},

		get: {
			auth: "user",
			retryPolicy: { enabled: true },
			params: { id: { type: "string", max: 40 } },
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string }>) {
				return { payment: publicPayment(await this.ownPayment(this.db.manager, ctx.params.id, buyerOf(ctx))) };
			},
		},

		mine: {
			auth: "user",
			retryPolicy: { enabled: true },
			params: {},
			async handler(this: PaymentsThis, ctx: Ctx) {
				const rows = await sql.paymentsOf(this.db, buyerOf(ctx));
				return { payments: rows.map(publicPayment) };
			},
		},
	},

	methods: {
		async ownPayment(this: PaymentsThis, em: EntityManager, id: string, userId: string, lock = false) {
			if (!isId(id)) throw notFound("Payment", "PAYMENT_NOT_FOUND");
			const p = await sql.paymentOf(em, id, userId, lock);
			if (!p) throw notFound("Payment", "PAYMENT_NOT_FOUND");
			return p;
		},

		/** Cancels an approved charge: "voided", or "refund_pending" when the gateway could not (logged for the operators). */
		async voidCharge(this: PaymentsThis, provider: PaymentProvider, key: string, paymentId: string): Promise<ChargeOutcome> {
			for (let attempt = 0; attempt < 3; attempt++) {
				try {
					if (await provider.void(key)) return "voided";
				} catch (err) {
					this.logger.warn(`Voiding the charge of payment ${paymentId}:`, (err as Error).message);
				}
			}
			this.logger.error(`Payment ${paymentId}: the charge could not be voided; refund it by hand (gateway key ${key}).`);
			return "refund_pending";
		},

		/** The buyer is told the result either way: a receipt, or why it failed. */
		async tell(this: PaymentsThis, p: PaymentRow, kind: "payment.receipt" | "payment.failed", charge: ChargeOutcome = "none") {
			const who = await users.receiptFacts(this.db, p.user_id, p.slot_id);
			const locale = this.config.locale;
			const facts = { loginId: who.login_id, productName: who.name, paymentId: String(p.id) };
			await this.notify({
				...(kind === "payment.receipt"
					? buyerMessages.paymentReceipt(locale, { ...facts, amount: Number(p.amount), method: methodName(p.method, locale), paidAt: (p as { updated_at?: Date }).updated_at ?? new Date() })
					: buyerMessages.paymentFailed(locale, {
							...facts,
							reason: String(p.failure_reason),
							payUrl: `${this.config.publicUrl}/p/${who.product_id}`,
							canRetry: p.failure_reason === "PAYMENT_DECLINED",
							charge,
						})),
				channel: "email",
				recipient: who.email,
				dedupeKey: `${kind}-${p.id}`,
			});
		},
	},

	created(this: PaymentsThis) {
		this.hashKey = requestHashKey(this.config.nodeSecret);
		this.providers = providers(this.config.paymentLatencyMs);
		const validator = this.broker.validator!;
		this.fieldChecks = new Map(
			[...this.providers.values()].map(p => [p.method, validator.compile({ $$strict: "remove", ...p.fields } as never) as (o: unknown) => true | unknown[]])
		);
	},
};

export default PaymentsService;
