import type { ServiceBroker } from "moleculer";
import type { SimulatedLedger } from "../../services/payments/provider";

/**
 * Counts the charges the simulated gateway of `method` actually makes (approved), per idempotency
 * key, from now on: the gateway is asked through `ledger.charge(key, decide)`, and a repeated key
 * is answered without deciding again, so counting the approved decisions counts real charges.
 */
export function countCharges(broker: ServiceBroker, method: string): Map<string, number> {
	const ledger = (broker.getLocalService("payments") as unknown as { providers: Map<string, { ledger: SimulatedLedger }> }).providers.get(method)!.ledger;
	const charged = new Map<string, number>();
	const charge = ledger.charge.bind(ledger);
	ledger.charge = (key, decide) =>
		charge(key, () =>
			decide().then(r => {
				if (r.approved) charged.set(key, (charged.get(key) ?? 0) + 1);
				return r;
			})
		);
	return charged;
}
