import type { Config } from "../../../config";
import { DiscordTransport } from "./discord";
import { EmailTransport } from "./email";
import { MailboxTransport } from "./mailbox";
import { SlackTransport } from "./slack";
import type { Transport } from "./types";
import { domainOfAddress } from "../smtp-answers";

export { DeliveryError } from "./types";
export type { Outgoing, Transport } from "./types";

/**
 * The transports this node's configuration gives, by delivery channel. A channel not here has no
 * configuration. E-mail's Message-IDs are in MAIL_FROM's domain (a provider distrusts a foreign one).
 */
export function transportsFor(config: Config): Map<string, Transport> {
	const map = new Map<string, Transport>();
	map.set("email", config.smtpUrl ? new EmailTransport(config.smtpUrl, config.mailFrom, config.notifier.concurrency, domainOfAddress(config.mailFrom) ?? "dopamine.local") : new MailboxTransport());
	if (config.slackWebhookUrl) map.set("slack", new SlackTransport(config.slackWebhookUrl));
	if (config.discordWebhookUrl) map.set("discord", new DiscordTransport(config.discordWebhookUrl));
	return map;
}
