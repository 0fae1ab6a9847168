/** Shapes that cross the wire between nodes: small, plain, no Dates. */

export type Outcome = "GRANTED" | "SOLD_OUT" | "ALREADY_HOLDING" | "SALE_NOT_OPEN";

/** A slot as a claim's answer carries it. */
export interface WireSlot {
	id: string;
	productId: string;
	status: "HELD" | "PAID";
	heldAt: string;
	expiresAt: string;
	epoch: number;
	seq: number;
}

/** allocator.claim's answer. */
export interface WireAnswer {
	outcome: Outcome;
	epoch: number;
	seq: number;
	slot?: WireSlot;
	saleAt?: string;
}

/** A product's sold-out state as the allocator broadcasts it and the gateways hold it. */
export interface SoldOutFlag {
	productId: string;
	epoch: number;
	version: number;
	soldOut: boolean;
	/** How long a gateway may answer from this flag without hearing it again. */
	leaseMs: number;
	/**
	 * Present while the sale has not opened (by the actor's own state): the gateway may answer
	 * SALE_NOT_OPEN until then, for as long as the lease runs. Absent: the actor deems it open.
	 */
	saleAt?: string;
	/** When the allocator signed it (ms since the epoch): a gateway refuses an old one (lib/identity.ts). */
	signedAt?: number;
	/** HMAC of the flag with the nodes' secret: a gateway applies only a flag a node signed. */
	sig?: string;
}
