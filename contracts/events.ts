/**
 * Every event the store's services exchange, named after the service that owns (emits) it, with
 * its payload. Services import names and shapes from here, never from each other's files.
 */

/** products: a product's stock, schedule or existence changed (broadcast: caches and actors). */
export const PRODUCT_CHANGED = "products.changed";
export interface ProductChanged {
	id: string;
	stock?: number;
	saleAt?: string;
	deleted?: boolean;
	/** Set by slots when units came back through expiry. */
	reclaimed?: boolean;
}

/** allocator: a product's sold-out flag, with its epoch, version and lease (broadcast to gateways). */
export const SOLD_OUT_FLAG = "allocator.flag";

/** allocator: a batch of grants committed; their remind/expire jobs are due. */
export const SLOTS_GRANTED = "allocator.granted";
export interface SlotsGranted {
	productId: string;
	count: number;
}

/** payments: a slot was paid (broadcast: the slots service drops its jobs, the actor marks it PAID). */
export const SLOT_PAID = "payments.slotPaid";
export interface SlotPaid {
	slotId: string;
	productId?: string;
}

/** slots: expired slots were reclaimed and their units are for sale again. */
export const SLOTS_RECLAIMED = "slots.reclaimed";
export interface SlotsReclaimed {
	count: number;
	products: string[];
}

/**
 * users: access tokens of a user issued before `notBefore` (unix seconds, compared with the
 * token's `iat`) no longer work: a password reset or a role change (broadcast to every gateway,
 * which keeps the latest per user in memory for the claim route).
 */
export const TOKENS_REVOKED = "users.tokensRevoked";
export interface TokensRevoked {
	userId: string;
	notBefore: number;
}

/**
 * users: this node's attempt counters (logins, sign-ups, password resets) left Redis for its own
 * memory (`degraded`), or went back. Gateways keep the latest per node and say `degraded` on
 * /api/health while any node counts alone. Sent on each change, and again every few seconds while
 * degraded (a gateway that starts later learns it too).
 */
export const COUNTERS_DEGRADED = "users.countersDegraded";
export interface CountersDegraded {
	nodeID: string;
	degraded: boolean;
	reason: string;
}
