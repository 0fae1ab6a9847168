/**
 * Domains never send mail: they publish message bodies on a durable channel, and the notifier
 * delivers them. The channel's name and these shapes are the one contract between them.
 */

/**
 * The durable channel (@moleculer/channels; a JetStream stream with TRANSPORTER, Moleculer's
 * local events without). Its payload is always a `MessageBatch`: one publish carries one or many
 * messages (the allocator's outbox drains a batch of "slot granted" messages as one publish).
 * The adapter prefixes it with the NAMESPACE, so clusters sharing a NATS never share a stream.
 */
export const NOTIFICATIONS_CHANNEL = "notifications";

/** The notifier's consumer group (durable consumer); prefixed with the NAMESPACE by the notifier. */
export const NOTIFIER_GROUP = "notifier";

/**
 * `email` goes to `recipient`; `operators` goes to every operators' channel the notifier has
 * configured (Slack and/or Discord today), one delivery each; any other channel the notifier's
 * registry names (services/notifier/transports/index.ts: `slack`, `discord`) goes to its configured
 * destination (recipient ignored). Not a closed union: that registry is the one list of channels
 * (contracts import nothing), and a name no transport has is logged FAILED ("unknown channel").
 */
export type Channel = "email" | "operators" | (string & {});

export interface MessageBody {
	/** E-mail address for `email`; ignored for the operators' chat channels. */
	recipient: string;
	channel: Channel;
	subject: string;
	text: string;
	/** ISO time to deliver at; absent (or past) = now. */
	sendAt?: string;
	/** What the message is about, for the delivery log and tests (e.g. "password.reset"). */
	kind: string;
	/**
	 * Same key = same message: the notifier delivers a key once, however often it is published or
	 * redelivered. Absent = the publisher gives it a random one (so a redelivery still dedupes).
	 * It is also what `notifier.cancel` takes to cancel a scheduled message.
	 */
	dedupeKey?: string;
}

export interface MessageBatch {
	messages: MessageBody[];
}

/** Kinds of the store's own messages (the delivery log's `kind`). */
export const MESSAGE_KINDS = {
	signedUp: "user.signedUp",
	passwordReset: "password.reset",
	slotGranted: "slot.granted",
	slotReminder: "slot.reminder",
	slotExpired: "slot.expired",
	paymentReceipt: "payment.receipt",
	paymentFailed: "payment.failed",
	/** "Notify me": a sale a buyer waits for opens soon. */
	saleOpening: "sale.opening",
	/** Operators' messages. */
	unitsReclaimed: "ops.unitsReclaimed",
	deliveriesFailed: "ops.deliveriesFailed",
	saleOpened: "ops.saleOpened",
	saleSoldOut: "ops.saleSoldOut",
	saleSummary: "ops.saleSummary",
} as const;

export type DeliveryStatus = "PENDING" | "SENT" | "FAILED" | "CANCELLED";

/** One row of the delivery log, as `GET /api/admin/notifications` lists it. */
export interface WireDelivery {
	id: string;
	kind: string;
	channel: string;
	recipient: string;
	subject: string;
	text: string;
	status: DeliveryStatus;
	attempts: number;
	/** When it will be tried next (PENDING); null while it waits for its sendAt, or when done. */
	nextAttemptAt: string | null;
	lastError: string | null;
	sendAt: string | null;
	createdAt: string;
	sentAt: string | null;
}
