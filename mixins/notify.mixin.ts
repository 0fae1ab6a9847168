import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";

/**
 * Domains never send mail: they publish a message body, and the notifier delivers it.
 * The event name is the one contract between them.
 */
export const NOTIFICATION_EVENT = "notifications.message";

export type Channel = "email" | "slack" | "discord";

export interface MessageBody {
	/** E-mail address for `email`; ignored for the operators' chat channels. */
	recipient: string;
	channel: Channel;
	subject: string;
	text: string;
	/** ISO time to deliver at; absent = now. */
	sendAt?: string;
	/** What the message is about, for the delivery log and tests (e.g. "password.reset"). */
	kind: string;
	/** Same key = same message: lets the notifier drop a repeat sent after a crash. */
	dedupeKey?: string;
}

export type WithNotify = Service & { notify(body: MessageBody): Promise<void> };

export function NotifyMixin(): Partial<ServiceSchema<ServiceSettingSchema, any>> {
	return {
		methods: {
			async notify(this: Service, body: MessageBody) {
				await this.broker.emit(NOTIFICATION_EVENT, body);
			},
		},
	};
}
