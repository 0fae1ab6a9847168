import { cardProvider } from "./card";
import { easypayProvider } from "./easypay";
import { pointsProvider } from "./points";
import type { PaymentProvider } from "./provider";

export type { PaymentProvider } from "./provider";

export function providers(latencyMs: number): Map<string, PaymentProvider> {
	return new Map([cardProvider(latencyMs), pointsProvider(latencyMs), easypayProvider(latencyMs)].map(p => [p.method, p]));
}
