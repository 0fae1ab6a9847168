import type { ChannelSettings, ChannelSpec, Config } from "../../../config";
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

/**
 * A notification channel as a plug-in: what config/ reads for it (its name, variables, default
 * pace, whether they configure it: `ChannelSpec`) and how this node's transport for it is built.
 * Each transport file exports one; the registry in ./index.ts lists them.
 */
export interface ChannelPlugin extends ChannelSpec {
	/** This node's transport for the channel, or null when its settings configure none. */
	build(settings: ChannelSettings, config: Config): Transport | null;
}
