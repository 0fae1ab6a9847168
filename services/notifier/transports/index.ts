import type { Config } from "../../../config";
import { discord } from "./discord";
import { email } from "./email";
import { slack } from "./slack";
import type { ChannelPlugin, Transport } from "./types";

export { DeliveryError } from "./types";
export type { ChannelPlugin, Outgoing, Transport } from "./types";

/**
 * The registry of notification channels: the one list the configuration (each channel's variables
 * and pace, read by config/ from these specs), the delivery log's channel filter, the operators'
 * fan-out and the notifier's transports come from. A new channel is one transport file beside
 * these (exporting its `ChannelPlugin`) and one line here (docs/notifications.md). The order is
 * the operators' fan-out's.
 */
export const CHANNELS: readonly ChannelPlugin[] = [
	email,
	slack,
	discord,
];

/** The channels' names, in the registry's order. */
export const CHANNEL_NAMES: readonly string[] = CHANNELS.map(c => c.name);

/** The transports this node's configuration gives, by channel. A channel not here has no configuration. */
export function transportsFor(config: Config): Map<string, Transport> {
	const map = new Map<string, Transport>();
	for (const plugin of CHANNELS) {
		const transport = plugin.build(config.channels.find(c => c.name === plugin.name)?.settings ?? {}, config);
		if (transport) map.set(plugin.name, transport);
	}
	return map;
}
