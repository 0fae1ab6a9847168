import type { Outgoing, Transport } from "./types";

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

	async send(_m: Outgoing): Promise<void> {
		// Nothing to do: the row is the mail.
	}
}
