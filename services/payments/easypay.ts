import { ChargeRequest, ChargeResult, PaymentProvider, SimulatedLedger, simulatedLatency } from "./provider";

export function easypayProvider(latencyMs: number, ledger = new SimulatedLedger()): PaymentProvider & { ledger: SimulatedLedger } {
	return {
		method: "easypay",
		names: { ko: "간편결제", en: "Easy pay" },
		ledger,
		fields: { provider: { type: "enum", values: ["kakaopay", "naverpay", "toss"] } },
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
