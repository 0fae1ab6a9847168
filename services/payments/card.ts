import { ChargeRequest, ChargeResult, PaymentProvider, simulatedLatency } from "./provider";

/** Card number 4000000000000002 is always declined, as test cards are. */
export const DECLINED_CARD = "4000000000000002";

export function cardProvider(latencyMs: number): PaymentProvider {
	return {
		method: "card",
		fields: { cardNumber: { type: "string", pattern: /^[0-9]{12,19}$/, messages: { stringPattern: "The 'cardNumber' field must be 12 to 19 digits." } } },
		details: f => ({ cardNumber: f.cardNumber, last4: String(f.cardNumber).slice(-4) }),
		async charge(req: ChargeRequest): Promise<ChargeResult> {
			await simulatedLatency(latencyMs);
			if (req.details.cardNumber === DECLINED_CARD) return { approved: false, reason: "CARD_DECLINED" };
			return { approved: true, reference: `card-${req.paymentId}` };
		},
	};
}
