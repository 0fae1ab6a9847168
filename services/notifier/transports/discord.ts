import { postJson, webhookChannel } from "./webhook";
import type { Outgoing, Transport } from "./types";

/** An operators' channel; Discord's webhooks answer 429 with Retry-After beyond 30 messages a minute. */
export const discord = webhookChannel("discord", "DISCORD_WEBHOOK_URL", { perMinute: 30, burst: 5 }, url => new DiscordTransport(url));

/**
 * Discord webhook (DISCORD_WEBHOOK_URL): `content` (the subject) and one embed (title and
 * description), as Discord documents them. Discord answers 429 with Retry-After when a webhook
 * posts too fast; the next try waits that long.
 */
export class DiscordTransport implements Transport {
	constructor(private readonly url: string) {}

	describe(): string {
		return "Discord webhook";
	}

	async send(m: Outgoing): Promise<void> {
		await postJson("Discord", this.url, discordPayload(m));
	}
}

export function discordPayload(m: Pick<Outgoing, "subject" | "text">) {
	return {
		content: m.subject.slice(0, 2000),
		embeds: [{ title: m.subject.slice(0, 256), description: m.text.slice(0, 4096) }],
		allowed_mentions: { parse: [] as string[] },
	};
}
