import { asAdmin, guarded, ReplCommand, say, table } from "./command";

/** The notifier's delivery log: `deliveries [--failed]`, `resend <deliveryId>`. */

/** The notifier's admin actions (the same ones GET /api/admin/notifications and .../resend call). */
export const NOTIFIER_LIST = "notifier.list";
export const NOTIFIER_RESEND = "notifier.resend";
export const NOTIFIER_RESEND_FAILED = "notifier.resendFailed";

export const deliveriesCommand: ReplCommand = {
	command: "deliveries",
	description: "The latest deliveries (e-mail, Slack, Discord) with status and attempts; --failed for the failed ones only",
	options: [
		{ option: "--failed", description: "only deliveries that finally failed" },
		{ option: "--page <n>", description: "page of the log (newest first)" },
	],
	action: guarded(async (broker, args) => {
		const params: Record<string, unknown> = {};
		if (args.options.failed) params.status = "FAILED";
		if (args.options.page) params.page = Number(args.options.page);
		const { notifications }: any = await broker.call(NOTIFIER_LIST, params, asAdmin(broker));
		say(`${notifications.length} deliver${notifications.length === 1 ? "y" : "ies"}${args.options.failed ? " failed" : ""}`);
		say(
			table(
				["id", "kind", "channel", "recipient", "status", "attempts", "lastError", "createdAt"],
				notifications.map((d: any) => [d.id, d.kind, d.channel, d.recipient, d.status, d.attempts, d.lastError, d.createdAt])
			)
		);
	}),
};

export const resendCommand: ReplCommand = {
	command: "resend <deliveryId>",
	description: "Send one delivery again (a failed one, or any by id)",
	action: guarded(async (broker, args) => {
		await broker.call(NOTIFIER_RESEND, { id: String(args.deliveryId) }, asAdmin(broker));
		say(`Delivery ${args.deliveryId} queued to be sent again.`);
	}),
};

export const resendFailedCommand: ReplCommand = {
	command: "resend-failed",
	description: "Send every FAILED delivery again, at the channel's pace; filter by --kind, --channel, --since, --until",
	options: [
		{ option: "--kind <kind>", description: "only this kind (e.g. slot.granted)" },
		{ option: "--channel <channel>", description: "only this channel (email, slack, discord)" },
		{ option: "--since <time>", description: "only those created at or after this ISO time" },
		{ option: "--until <time>", description: "only those created before this ISO time" },
	],
	action: guarded(async (broker, args) => {
		const params: Record<string, unknown> = {};
		for (const k of ["kind", "channel", "since", "until"]) if (args.options[k] !== undefined) params[k] = String(args.options[k]);
		const { resent }: any = await broker.call(NOTIFIER_RESEND_FAILED, params, asAdmin(broker));
		say(`${resent} failed deliver${resent === 1 ? "y" : "ies"} queued to be sent again.`);
	}),
};
