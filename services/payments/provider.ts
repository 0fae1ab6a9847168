import type { Locale } from "../../lib/messages";

/**
 * A payment method is one provider: it checks the method's own fields when a payment starts, and
 * charges when the buyer confirms. The built-in ones simulate a payment gateway (latency, declines).
 * A new method is one file beside these, added to the registry in ./index.ts.
 */
export interface ChargeRequest {
	/** The gateway's idempotency key: one charge per key, however often it is asked. */
	idempotencyKey: string;
	paymentId: string;
	userId: string;
	amount: number;
	details: Record<string, unknown>;
	/** The buyer's points balance, for the points method. */
	pointsBalance: number;
}

export type ChargeResult = { approved: true; reference: string } | { approved: false; reason: string };

/**
 * One field of a method as the purchase page draws it: a label (and a hint) in the buyer's words,
 * then a text input, or a list when the field takes one of `choices`. The page builds it from
 * GET /api/payment-methods, so a method with fields needs nothing in the page's own files.
 */
export interface PaymentInput {
	/** The field's key in `fields` and in the initiate body. */
	name: string;
	labels: Record<Locale, string>;
	hints?: Record<Locale, string>;
	/** Digits typed with spaces or dashes (a card number): the page drops them and asks for a number pad. */
	digits?: boolean;
	/** The browser's autofill name (`cc-number`). */
	autocomplete?: string;
	maxLength?: number;
	choices?: readonly { value: string; names: Record<Locale, string> }[];
}

export interface PaymentProvider {
	readonly method: string;
	/** The method's name in the buyer's words, as a label: the page's choice and the receipt's "Paid by" say it. */
	readonly names: Record<Locale, string>;
	/**
	 * Pays from the buyer's points balance: the confirm transaction lowers the balance (a decline
	 * if another payment spent it meanwhile), and there is no gateway charge to void.
	 */
	readonly spendsPoints?: boolean;
	/** Validation schema (fastest-validator) of the method's fields in the initiate body. */
	readonly fields: Record<string, unknown>;
	/** How the page asks for each of `fields`, in the order shown (none for a method without fields). */
	readonly inputs?: readonly PaymentInput[];
	/** What is kept of the fields: never a full card number (at most its brand and last four digits). */
	details(fields: Record<string, unknown>): Record<string, unknown>;
	/** Idempotent by `idempotencyKey`: asked again, it answers the first result and charges nothing. */
	charge(req: ChargeRequest): Promise<ChargeResult>;
	/**
	 * Cancels an approved charge (a slot that could no longer be paid): after it the buyer was not
	 * charged. Idempotent by the charge's key; false when there was no approved charge to cancel.
	 */
	void(idempotencyKey: string): Promise<boolean>;
}

export const simulatedLatency = (ms: number) => (ms > 0 ? new Promise(r => setTimeout(r, ms)) : Promise.resolve());

/**
 * The simulated gateway's side of the money: every charge it made, by idempotency key, as a real
 * gateway keeps them. A repeated key gets the first answer (even while the first is in flight).
 * Kept for `retentionMs` (a day by default: far longer than a payment can stay PENDING, a slot's
 * life), then pruned, oldest first, so the process does not grow with every payment ever made.
 */
export class SimulatedLedger {
	private readonly byKey = new Map<string, { at: number; result: Promise<ChargeResult> }>();
	/** Approved charges cancelled, per idempotency key. */
	readonly voided = new Map<string, number>();

	constructor(private readonly retentionMs = 24 * 60 * 60 * 1000, private readonly now = () => Date.now()) {}

	/** How many charges the ledger remembers. */
	get size(): number {
		return this.byKey.size;
	}

	/** Drops what is older than the retention (the Map keeps insertion order: the oldest come first). */
	prune(): void {
		const before = this.now() - this.retentionMs;
		for (const [key, entry] of this.byKey) {
			if (entry.at > before) break;
			this.byKey.delete(key);
			this.voided.delete(key);
		}
	}

	charge(key: string, decide: () => Promise<ChargeResult>): Promise<ChargeResult> {
		this.prune();
		const known = this.byKey.get(key)?.result;
		if (known) return known;
		const result = decide();
		// A failure of the call itself is not an answer: the next attempt may charge.
		result.catch(() => this.byKey.delete(key));
		this.byKey.set(key, { at: this.now(), result });
		return result;
	}

	/** Cancels the approved charge of `key` once (a second void changes nothing, and answers true). */
	async void(key: string): Promise<boolean> {
		const entry = this.byKey.get(key);
		if (!entry) return false;
		const r = await entry.result.catch(() => null);
		if (!r?.approved) return false;
		if (!this.voided.has(key)) this.voided.set(key, 1);
		return true;
	}
}
