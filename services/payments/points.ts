import { ChargeRequest, ChargeResult, PaymentProvider, SimulatedLedger, simulatedLatency } from "./provider";

/** Declined over the buyer's balance; the balance itself is lowered in the confirm transaction. */
export function pointsProvider(latencyMs: number, ledger = new SimulatedLedger()): PaymentProvider & { ledger: SimulatedLedger } {
	return {
		method: "points",
		names: { ko: "포인트", en: "Points" },
		spendsPoints: true,
		ledger,
		fields: {},
		details: () => ({}),
		void: key => ledger.void(key),
		charge(req: ChargeRequest): Promise<ChargeResult> {
			return ledger.charge(req.idempotencyKey, async () => {
				await simulatedLatency(latencyMs);
				if (Math.ceil(req.amount) > req.pointsBalance) return { approved: false, reason: "INSUFFICIENT_POINTS" };
				return { approved: true, reference: `points-${req.paymentId}` };
			});
		},
	};
}
