import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { track, untrack } from "./resources";

/** A message as the test SMTP server accepted it (headers decoded, body decoded). */
export interface Mail {
	from: string;
	to: string[];
	subject: string;
	text: string;
	messageId: string;
	kind: string;
	at: number;
}

interface Held {
	sessionId: string;
	raw: string;
	envelope: { from: string; to: string[] };
	answer(err?: Error): void;
}

/**
 * A real SMTP server in the test process (the `smtp-server` package). A message counts as
 * delivered when the server answered its DATA with 250, as SMTP has it: `hold()` keeps answers
 * back (a slow server, or a kill test's "in flight"), and a held message whose client went away
 * before the answer is not counted. `down()` closes the port (connections refused), `up()`
 * opens the same port again.
 */
export class TestSmtp {
	readonly mails: Mail[] = [];
	/** Connection-level proof that a fault struck: DATA answers withheld, clients gone before their answer. */
	refusedWhileDown = 0;
	droppedWhileHeld = 0;
	delayMs = 0;
	/**
	 * A provider's answers: called for each message's DATA, it may refuse it with a code and text
	 * ("421" and "4.7.0 Try again later"); the refusal is kept in `refusals` and the message not counted.
	 */
	judge: ((to: string[]) => { code: number; message: string } | null) | null = null;
	readonly refusals: { code: number; message: string; to: string[]; at: number }[] = [];
	private holding = false;
	private held: Held[] = [];
	private closed = new Set<string>();
	private server!: SMTPServer;
	port = 0;
	private readonly key = {};

	static async start(): Promise<TestSmtp> {
		const s = new TestSmtp();
		await s.up();
		track(s.key, { name: `smtp server :${s.port}`, close: () => s.stop() });
		return s;
	}

	get url(): string {
		return `smtp://127.0.0.1:${this.port}`;
	}

	/** Messages answered 250 so far, for one recipient (or all). */
	to(recipient?: string): Mail[] {
		return recipient ? this.mails.filter(m => m.to.includes(recipient.toLowerCase())) : this.mails;
	}

	get heldCount(): number {
		return this.held.length;
	}

	hold(): void {
		this.holding = true;
	}

	/** Answers what was held: 250 to clients still there (counted), nothing to those gone. */
	release(): void {
		this.holding = false;
		for (const h of this.held.splice(0)) {
			if (this.closed.has(h.sessionId)) {
				this.droppedWhileHeld += 1;
				h.answer(new Error("client gone"));
			} else {
				this.accept(h.raw, h.envelope);
				h.answer();
			}
		}
	}

	private listening = false;

	async up(): Promise<void> {
		if (this.listening) return;
		this.server = new SMTPServer({
			authOptional: true,
			disabledCommands: ["STARTTLS", "AUTH"],
			logger: false,
			size: 10 * 1024 * 1024,
			// down() must refuse at once, not after smtp-server's 30 s grace for open connections.
			...({ closeTimeout: 50 } as object),
			onClose: session => {
				this.closed.add(session.id);
			},
			onData: (stream, session, callback) => {
				const chunks: Buffer[] = [];
				stream.on("data", c => chunks.push(c));
				stream.on("end", () => {
					const raw = Buffer.concat(chunks).toString("utf8");
					const envelope = {
						from: (session.envelope.mailFrom && session.envelope.mailFrom.address) || "",
						to: session.envelope.rcptTo.map(r => r.address.toLowerCase()),
					};
					const finish = () => {
						const refusal = this.judge?.(envelope.to) ?? null;
						if (refusal) {
							this.refusals.push({ ...refusal, to: envelope.to, at: Date.now() });
							return callback(Object.assign(new Error(refusal.message), { responseCode: refusal.code }));
						}
						if (this.holding) return void this.held.push({ sessionId: session.id, raw, envelope, answer: err => callback(err ?? null) });
						this.accept(raw, envelope);
						callback(null);
					};
					if (this.delayMs > 0) setTimeout(finish, this.delayMs);
					else finish();
				});
			},
		});
		this.server.on("error", () => undefined);
		await new Promise<void>((resolve, reject) => {
			this.server.once("error", reject);
			this.server.listen(this.port, "127.0.0.1", () => resolve());
		});
		this.port = (this.server.server.address() as AddressInfo).port;
		this.listening = true;
	}

	/** Closes the listener and every connection: clients get "connection refused" until `up()`. */
	async down(): Promise<void> {
		if (!this.listening) return;
		this.listening = false;
		await new Promise<void>(resolve => this.server.close(() => resolve()));
	}

	async stop(): Promise<void> {
		this.release();
		await this.down().catch(() => undefined);
		untrack(this.key);
	}

	private accept(raw: string, envelope: { from: string; to: string[] }) {
		const { headers, body } = parseMessage(raw);
		this.mails.push({
			from: headers["from"] ?? envelope.from,
			to: envelope.to,
			subject: headers["subject"] ?? "",
			text: body,
			messageId: headers["message-id"] ?? "",
			kind: headers["x-dopamine-kind"] ?? "",
			at: Date.now(),
		});
	}
}

/** Decodes RFC 2047 encoded words (=?UTF-8?B?...?= / =?UTF-8?Q?...?=). */
function decodeWords(value: string): string {
	return value
		.replace(/\?=\s+=\?/g, "?==?")
		.replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_m, _charset, enc: string, data: string) =>
			enc.toUpperCase() === "B"
				? Buffer.from(data, "base64").toString("utf8")
				: Buffer.from(data.replace(/_/g, " ").replace(/=([0-9A-Fa-f]{2})/g, (_x, h) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("utf8")
		);
}

function decodeQuotedPrintable(s: string): string {
	const bytes = s.replace(/=\r?\n/g, "").replace(/=([0-9A-Fa-f]{2})/g, (_m, h) => String.fromCharCode(parseInt(h, 16)));
	return Buffer.from(bytes, "latin1").toString("utf8");
}

/** A single-part text message (what the notifier sends): headers unfolded and decoded, body decoded. */
export function parseMessage(raw: string): { headers: Record<string, string>; body: string } {
	const split = raw.search(/\r?\n\r?\n/);
	const head = raw.slice(0, split).replace(/\r?\n[ \t]+/g, " ");
	const bodyRaw = raw.slice(split).replace(/^\r?\n\r?\n/, "");
	const headers: Record<string, string> = {};
	for (const line of head.split(/\r?\n/)) {
		const i = line.indexOf(":");
		if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = decodeWords(line.slice(i + 1).trim());
	}
	const cte = (headers["content-transfer-encoding"] ?? "7bit").toLowerCase();
	const body =
		cte === "quoted-printable"
			? decodeQuotedPrintable(bodyRaw)
			: cte === "base64"
				? Buffer.from(bodyRaw.replace(/\s+/g, ""), "base64").toString("utf8")
				: bodyRaw;
	return { headers, body: body.replace(/\r\n/g, "\n").replace(/\n$/, "") };
}
