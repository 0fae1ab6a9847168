import { ChargeRequest, ChargeResult, PaymentProvider, SimulatedLedger, simulatedLatency } from "./provider";

/** The easy-pay services a buyer may choose, in the page's order. */
const PROVIDERS = [
	{ value: "kakaopay", names: { ko: "카카오페이", en: "KakaoPay" } },
	{ value: "naverpay", names: { ko: "네이버페이", en: "Naver Pay" } },
	{ value: "toss", names: { ko: "토스", en: "Toss" } },
];

export function easypayProvider(latencyMs: number, ledger = new SimulatedLedger()): PaymentProvider & { ledger: SimulatedLedger } {
	return {
		method: "easypay",
		names: { ko: "간편결제", en: "Easy pay" },
		ledger,
		fields: { provider: { type: "enum", values: PROVIDERS.map(p => p.value) } },
		inputs: [{ name: "provider", labels: { ko: "간편결제사", en: "Provider" }, choices: PROVIDERS }],
		details: f => ({ provider: f.provider }),
		void: key => ledger.void(key),
		charge(req: ChargeRequest): Promise<ChargeResult> {
			return ledger.charge(req.idempotencyKey, async () => {
				await simulatedLatency(latencyMs);
				return { approved: true, reference: `${req.details.provider}-${req.paymentId}` };
			});
		},
	};
}
