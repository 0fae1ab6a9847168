import { asAdmin, guarded, ReplCommand, say } from "./command";

/** Slot lifecycle by hand: `expire <slotId>`, `sweep`. */

export const expireCommand: ReplCommand = {
	command: "expire <slotId>",
	description: "Expire one HELD slot now and put its unit back on sale",
	action: guarded(async (broker, args) => {
		const r: any = await broker.call("slots.expire", { slotId: String(args.slotId) }, asAdmin(broker));
		say(r.expired ? `Slot ${args.slotId} expired; its unit is on sale again.` : `Slot ${args.slotId} was not HELD: nothing expired.`);
	}),
};

export const sweepCommand: ReplCommand = {
	command: "sweep",
	description: "One pass of the slots safety net: expire overdue slots, schedule jobs a crash left",
	action: guarded(async broker => {
		const r: any = await broker.call("slots.sweep", {}, asAdmin(broker));
		say(`Sweep: ${r.reclaimed} slot(s) reclaimed, ${r.scheduled} grant(s) given their jobs.`);
	}),
};
