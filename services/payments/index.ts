import { cardProvider } from "./card";
import { easypayProvider } from "./easypay";
import { pointsProvider } from "./points";
import type { PaymentInput, PaymentProvider } from "./provider";
import type { Locale } from "../../lib/messages";

export type { PaymentInput, PaymentProvider } from "./provider";

/**
 * The registry of payment methods: the one list the validator's enum, the receipt's method name,
 * the page's choices (GET /api/payment-methods) and the points special case come from. A new
 * method is one provider file beside these and one line here.
 */
const REGISTRY: ((latencyMs: number) => PaymentProvider)[] = [
	cardProvider,
	pointsProvider,
	easypayProvider,
];

export function providers(latencyMs: number): Map<string, PaymentProvider> {
	return new Map(REGISTRY.map(make => make(latencyMs)).map(p => [p.method, p]));
}

/** What the page needs of a method: its key, its names, whether it pays from points, and its fields. */
export interface PaymentMethod {
	method: string;
	names: Record<Locale, string>;
	spendsPoints: boolean;
	inputs: readonly PaymentInput[];
}

/** Read once from providers made without latency (their ledgers are never charged). */
export const PAYMENT_METHODS: readonly PaymentMethod[] = [...providers(0).values()].map(p => ({
	method: p.method,
	names: p.names,
	spendsPoints: p.spendsPoints === true,
	inputs: p.inputs ?? [],
}));

/** The method's name in the buyer's words; an unknown method is named by its key. */
export function methodName(method: string, locale: Locale): string {
	return PAYMENT_METHODS.find(m => m.method === method)?.names[locale] ?? method;
}
