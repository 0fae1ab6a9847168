import * as nodemailer from "nodemailer";
import { isOneEmail } from "../../../lib/validation";
import { DeliveryError, Outgoing, Transport } from "./types";

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
			const e = err as Error & { responseCode?: number; code?: string };
			// 5xx is the server's final word on this message (bad address, rejected); 4xx and
			// connection errors are worth another try.
			const permanent = typeof e.responseCode === "number" && e.responseCode >= 500 && e.responseCode < 600;
			throw new DeliveryError(`SMTP ${e.responseCode ?? e.code ?? ""}: ${e.message}`.replace(/\s+/g, " ").trim(), permanent);
		}
	}

	async close(): Promise<void> {
		this.mailer.close();
	}
}
