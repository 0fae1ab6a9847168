import { DeliveryError, Outgoing, Transport } from "./types";

/**
 * The local mailbox, for a store with no SMTP_URL (the default single process): the message is
 * "delivered" by being kept, in full, in the delivery log, where admins read it
 * (`GET /api/admin/notifications?channel=email`). So a newcomer can follow a password reset on
 * one machine with no mail server.
 */
export class MailboxTransport implements Transport {
	describe(): string {
		return "the local mailbox (no SMTP_URL): read it at GET /api/admin/notifications?channel=email";
	}

	async send(m: Outgoing): Promise<void> {
		// As the SMTP transport judges it: a mail with nobody to read it was not delivered.
		if (!m.recipient) throw new DeliveryError("e-mail without a recipient", true);
		// Otherwise nothing to do: the row is the mail.
	}
}
