import { ChargeRequest, ChargeResult, PaymentProvider, simulatedLatency } from "./provider";

export function easypayProvider(latencyMs: number): PaymentProvider {
	return {
		method: "easypay",
		fields: { provider: { type: "enum", values: ["kakaopay", "naverpay", "toss"] } },
		details: f => ({ provider: f.provider }),
		async charge(req: ChargeRequest): Promise<ChargeResult> {
			await simulatedLatency(latencyMs);
			return { approved: true, reference: `${req.details.provider}-${req.paymentId}` };
		},
	};
}
