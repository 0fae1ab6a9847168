import { postJson } from "./webhook";
import type { Outgoing, Transport } from "./types";

/**
 * Slack incoming webhook (SLACK_WEBHOOK_URL): `text` (the notification's fallback) and `blocks`
 * (a header with the subject, a section with the text), as Slack documents them.
 */
export class SlackTransport implements Transport {
	constructor(private readonly url: string) {}

	describe(): string {
		return "Slack webhook";
	}

	async send(m: Outgoing): Promise<void> {
		await postJson("Slack", this.url, slackPayload(m));
	}
}

export function slackPayload(m: Pick<Outgoing, "subject" | "text">) {
	return {
		text: `${m.subject}\n${m.text}`,
		blocks: [
			{ type: "header", text: { type: "plain_text", text: m.subject.slice(0, 150), emoji: true } },
			{ type: "section", text: { type: "mrkdwn", text: m.text.slice(0, 3000) } },
		],
	};
}
