import { adminCommand } from "./admin";
import type { ReplCommand } from "./command";
import { deliveriesCommand, resendCommand, resendFailedCommand } from "./notifications";
import { ownersCommand, reportCommand, saleCommand, salesCommand } from "./sales";
import { expireCommand, sweepCommand } from "./slots";

/** Every store command of the REPL, beside Moleculer's own (`help` lists them with their text). */
export const replCommands: ReplCommand[] = [
	saleCommand,
	salesCommand,
	ownersCommand,
	reportCommand,
	expireCommand,
	sweepCommand,
	deliveriesCommand,
	resendCommand,
	resendFailedCommand,
	adminCommand,
];
