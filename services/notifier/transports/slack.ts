import { postJson, webhookChannel } from "./webhook";
import type { Outgoing, Transport } from "./types";

/** An operators' channel; Slack's webhooks take about one message a second. */
export const slack = webhookChannel("slack", "SLACK_WEBHOOK_URL", { perMinute: 60, burst: 5 }, url => new SlackTransport(url));

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

/** Slack's own escaping for text it parses (mrkdwn, and the fallback): `<`, `>` and `&` are never control sequences. */
const slackEscape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function slackPayload(m: Pick<Outgoing, "subject" | "text">) {
	return {
		text: slackEscape(`${m.subject}\n${m.text}`),
		blocks: [
			{ type: "header", text: { type: "plain_text", text: m.subject.slice(0, 150), emoji: true } },
			{ type: "section", text: { type: "mrkdwn", text: slackEscape(m.text.slice(0, 3000)) } },
		],
	};
}
