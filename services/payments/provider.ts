/**
 * A payment method is one provider: it checks the method's own fields when a payment starts, and
 * charges when the buyer confirms. The built-in ones simulate a payment gateway (latency, declines).
 * A new method is one file beside these, added to ./index.ts.
 */
export interface ChargeRequest {
	paymentId: string;
	userId: string;
	amount: number;
	details: Record<string, unknown>;
	/** The buyer's points balance, for the points method. */
	pointsBalance: number;
}

export type ChargeResult = { approved: true; reference: string } | { approved: false; reason: string };

export interface PaymentProvider {
	readonly method: string;
	/** Validation schema (fastest-validator) of the method's fields in the initiate body. */
	readonly fields: Record<string, unknown>;
	/** What is kept of the fields (never a full card number). */
	details(fields: Record<string, unknown>): Record<string, unknown>;
	charge(req: ChargeRequest): Promise<ChargeResult>;
}

export const simulatedLatency = (ms: number) => (ms > 0 ? new Promise(r => setTimeout(r, ms)) : Promise.resolve());
