import { ChargeRequest, ChargeResult, PaymentProvider, SimulatedLedger, simulatedLatency } from "./provider";

/** Test card 4000000000000002 is always declined, as test cards are. */
export const DECLINED_CARD = "4000000000000002";

/** The card's brand by its leading digits (what a receipt shows beside the last four). */
export function cardBrand(cardNumber: string): string {
	if (/^4/.test(cardNumber)) return "visa";
	if (/^(5[1-5]|2(2[2-9]|[3-6]|7[01]|720))/.test(cardNumber)) return "mastercard";
	if (/^3[47]/.test(cardNumber)) return "amex";
	if (/^35/.test(cardNumber)) return "jcb";
	if (/^(6011|65|64[4-9])/.test(cardNumber)) return "discover";
	return "card";
}

/**
 * Only the brand and the last four digits are kept, so the simulated gateway decides a decline from
 * those: the declined test card is the Visa ending 0002.
 */
const isDeclined = (details: Record<string, unknown>) =>
	details.brand === cardBrand(DECLINED_CARD) && details.last4 === DECLINED_CARD.slice(-4);

export function cardProvider(latencyMs: number, ledger = new SimulatedLedger()): PaymentProvider & { ledger: SimulatedLedger } {
	return {
		method: "card",
		names: { ko: "카드", en: "Card" },
		ledger,
		fields: { cardNumber: { type: "string", pattern: /^[0-9]{12,19}$/, messages: { stringPattern: "The 'cardNumber' field must be 12 to 19 digits." } } },
		inputs: [
			{
				name: "cardNumber",
				labels: { ko: "카드 번호", en: "Card number" },
				hints: { ko: "숫자 12~19자리", en: "12 to 19 digits" },
				digits: true,
				autocomplete: "cc-number",
				// 19 digits with the spaces or dashes people type between groups of four.
				maxLength: 23,
			},
		],
		details: f => ({ brand: cardBrand(String(f.cardNumber)), last4: String(f.cardNumber).slice(-4) }),
		void: key => ledger.void(key),
		charge(req: ChargeRequest): Promise<ChargeResult> {
			return ledger.charge(req.idempotencyKey, async () => {
				await simulatedLatency(latencyMs);
				if (isDeclined(req.details)) return { approved: false, reason: "CARD_DECLINED" };
				return { approved: true, reference: `card-${req.paymentId}` };
			});
		},
	};
}
