import * as nodemailer from "nodemailer";
import { isOneEmail } from "../../../lib/validation";
import { classifySmtpAnswer, domainOfAddress } from "../smtp-answers";
import { MailboxTransport } from "./mailbox";
import { ChannelPlugin, DeliveryError, Outgoing, Transport } from "./types";

/**
 * E-mail: by SMTP when SMTP_URL is set, else into the local mailbox (./mailbox.ts). Its pace
 * applies to SMTP only (the mailbox has no provider to spare); the default suits a Gmail account
 * sending by SMTP (one message every two seconds, five at once): Gmail answers a faster sender
 * 421 4.7.0 and a day's quota 550 5.4.5, both "later" to the notifier. Message-IDs are in
 * MAIL_FROM's domain (a provider distrusts a foreign one).
 */
export const email: ChannelPlugin = {
	name: "email",
	env: { smtpUrl: "SMTP_URL", mailFrom: "MAIL_FROM" },
	pace: { perMinute: 30, burst: 5 },
	configured: s => s.smtpUrl !== null,
	build(s, config) {
		if (!s.smtpUrl) return new MailboxTransport();
		const from = s.mailFrom ?? "Dopamine Store <no-reply@dopamine.local>";
		return new EmailTransport(s.smtpUrl, from, config.notifier.concurrency, domainOfAddress(from) ?? "dopamine.local");
	},
};

/**
 * E-mail through an SMTP server (nodemailer, pooled: `concurrency` connections). SMTP_URL is
 * nodemailer's URL form: smtp://host:port (STARTTLS when offered), smtps://user:pass@host:465.
 * Each message carries a Message-ID made of its delivery id, so a receiving system that dedupes
 * by Message-ID (Gmail does) shows a message resent after a crash once.
 */
export class EmailTransport implements Transport {
	private readonly mailer: nodemailer.Transporter;
	private readonly host: string;

	constructor(private readonly smtpUrl: string, private readonly from: string, concurrency: number, private readonly idDomain: string) {
		const url = new URL(smtpUrl);
		this.host = `${url.protocol}//${url.hostname}:${url.port || (url.protocol === "smtps:" ? 465 : 587)}`;
		this.mailer = nodemailer.createTransport({
			url: smtpUrl,
			pool: true,
			maxConnections: concurrency,
			// Fail a try in seconds, well inside the notifier's lease (another node must not take it meanwhile).
			connectionTimeout: 10_000,
			greetingTimeout: 10_000,
			socketTimeout: 30_000,
		} as nodemailer.TransportOptions);
	}

	describe(): string {
		return `SMTP ${this.host}`;
	}

	async send(m: Outgoing): Promise<void> {
		if (!m.recipient) throw new DeliveryError("e-mail without a recipient", true);
		// One address, never a list: nodemailer would send to every address the string names.
		if (!isOneEmail(m.recipient)) throw new DeliveryError("e-mail recipient is not exactly one address", true);
		try {
			await this.mailer.sendMail({
				from: this.from,
				to: m.recipient,
				subject: m.subject,
				text: m.text,
				messageId: `<delivery-${m.id}@${this.idDomain}>`,
				headers: { "X-Dopamine-Kind": m.kind },
			});
		} catch (err) {
			const e = err as Error & { responseCode?: number; response?: string; code?: string };
			// By the enhanced status code: a rejected address is final; a throttle or a quota is "later".
			const verdict = classifySmtpAnswer(e.responseCode, e.response);
			throw new DeliveryError(`SMTP ${e.responseCode ?? e.code ?? ""}: ${e.message}`.replace(/\s+/g, " ").trim(), verdict === "final", undefined, verdict === "later");
		}
	}

	async close(): Promise<void> {
		this.mailer.close();
	}
}
