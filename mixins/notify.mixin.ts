import { randomUUID } from "node:crypto";
import { asNode } from "../lib/identity";
import type { Service, ServiceBroker, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { MessageBatch, MessageBody, NOTIFICATIONS_CHANNEL } from "../contracts";
import type { ChannelBroker } from "../lib/channels";

/**
 * Hands message bodies to the notifier and forgets them. The whole API:
 *
 *   await this.notify(body)               one message; never throws (a lost publish is logged)
 *   await this.notifyMany(bodies)         many messages in ONE publish; throws if it failed
 *                                         (for outboxes: mark done only after it resolved)
 *   await this.notifyOperators(r, opts?)  a message to the operators' channels (Slack and/or
 *                                         Discord, whichever the notifier has configured)
 *   await this.cancelNotification(key)    cancel a scheduled message by its dedupeKey
 *
 * A body is `{kind, channel, recipient, subject, text, sendAt?, dedupeKey?}` (contracts/messages.ts);
 * texts come from lib/messages. Give a `dedupeKey` whenever the same message could be published
 * twice (a retry, a sweep after a crash, two nodes): the notifier delivers each key once. Give
 * `sendAt` (ISO) to deliver later; it can be cancelled until then with `cancelNotification(key)`.
 */
export type WithNotify = Service & {
	notify(body: MessageBody): Promise<boolean>;
	notifyMany(bodies: MessageBody[]): Promise<void>;
	notifyOperators(message: { kind: string; subject: string; text: string }, opts?: { dedupeKey?: string; sendAt?: string }): Promise<boolean>;
	cancelNotification(dedupeKey: string): Promise<{ cancelled: number }>;
};

/** Publishes bodies as one message on the notifications channel (every body gets a dedupeKey). */
export async function publishMessages(broker: ServiceBroker, bodies: MessageBody[]): Promise<void> {
	if (bodies.length === 0) return;
	const messages = bodies.map(b => (b.dedupeKey ? b : { ...b, dedupeKey: `msg-${randomUUID()}` }));
	// One key per publish for JetStream's own duplicate window (a publish retried by the client).
	const msgID = messages.length === 1 ? messages[0].dedupeKey : undefined;
	await (broker as ChannelBroker).sendToChannel(NOTIFICATIONS_CHANNEL, { messages } satisfies MessageBatch, msgID ? { msgID } : {});
}

export function NotifyMixin(): Partial<ServiceSchema<ServiceSettingSchema, any>> {
	return {
		methods: {
			async notify(this: WithNotify, body: MessageBody): Promise<boolean> {
				try {
					await publishMessages(this.broker, [body]);
					return true;
				} catch (err) {
					// The caller's own work is done (a user row, a payment): a lost message must not undo it.
					this.logger.error(`notification ${body.kind} to ${body.channel} not published: ${(err as Error).message}`);
					return false;
				}
			},

			async notifyMany(this: WithNotify, bodies: MessageBody[]): Promise<void> {
				await publishMessages(this.broker, bodies);
			},

			async notifyOperators(this: WithNotify, message: { kind: string; subject: string; text: string }, opts: { dedupeKey?: string; sendAt?: string } = {}) {
				return this.notify({ ...message, channel: "operators", recipient: "", ...opts });
			},

			async cancelNotification(this: WithNotify, dedupeKey: string) {
				// notifier.cancel is an admin action: the node signs for itself (lib/identity.ts).
				return this.broker.call("notifier.cancel", { dedupeKey }, asNode(this.broker));
			},
		},
	};
}
