import { ChargeRequest, ChargeResult, PaymentProvider, simulatedLatency } from "./provider";

/** Declined over the buyer's balance; the balance itself is lowered in the confirm transaction. */
export function pointsProvider(latencyMs: number): PaymentProvider {
	return {
		method: "points",
		fields: {},
		details: () => ({}),
		async charge(req: ChargeRequest): Promise<ChargeResult> {
			await simulatedLatency(latencyMs);
			if (Math.ceil(req.amount) > req.pointsBalance) return { approved: false, reason: "INSUFFICIENT_POINTS" };
			return { approved: true, reference: `points-${req.paymentId}` };
		},
	};
}
