import type { WireDelivery } from "../../../contracts";

/** What a transport needs of a delivery, and how it says a try failed. */
export type Outgoing = Pick<WireDelivery, "id" | "kind" | "channel" | "recipient" | "subject" | "text">;

export interface Transport {
	/** Where this transport sends, for the start log (never a secret). */
	describe(): string;
	/** Resolves when the message was accepted; throws a DeliveryError (or any error: retried) when not. */
	send(message: Outgoing): Promise<void>;
	close?(): Promise<void>;
}

/**
 * A failed try. `permanent`: retrying cannot help (no configuration, a rejected address): FAILED
 * at once. `retryAfterMs`: the other side said when to come back (429 Retry-After): next try then.
 */
export class DeliveryError extends Error {
	/**
	 * `later`: the other side said "not now" (an SMTP throttle or quota answer): try again, slow the
	 * channel down, and do not count it against the message's tries.
	 */
	constructor(message: string, readonly permanent = false, readonly retryAfterMs?: number, readonly later = false) {
		super(message);
		this.name = "DeliveryError";
	}
}
