import type { ServiceBroker } from "moleculer";
import type { AuthUser } from "../lib/context";
import { actingAs } from "../lib/identity";

/**
 * The operators' REPL commands (moleculer-repl custom commands), one file per topic. Admin
 * operations are service actions that declare `auth: "admin"`; a REPL operator is already trusted
 * (they run the node, and hold its secret), so the commands call them as this admin identity,
 * signed with the node secret like a gateway's (lib/identity.ts), fresh for each call.
 */
export const REPL_ADMIN: AuthUser = { id: "repl", role: "admin" };
export const asAdmin = (broker: ServiceBroker) => actingAs(broker, REPL_ADMIN);

export interface ReplArgs {
	options: Record<string, unknown>;
	rawCommand: string;
	[arg: string]: unknown;
}

export interface ReplCommand {
	command: string;
	description: string;
	alias?: string[];
	options?: { option: string; description: string }[];
	allowUnknownOptions?: boolean;
	action(broker: ServiceBroker, args: ReplArgs): Promise<void>;
}

/** Prints a line to the operator's terminal. */
export const say = (...parts: unknown[]) => console.log(...parts);

/** Runs a command body, printing a failure in one line instead of a stack. */
export function guarded(body: (broker: ServiceBroker, args: ReplArgs) => Promise<void>) {
	return async (broker: ServiceBroker, args: ReplArgs) => {
		try {
			await body(broker, args);
		} catch (err) {
			const e = err as { message?: string; type?: string; code?: number };
			say(`>> ERROR: ${e.message ?? String(err)}${e.type ? ` (${e.type}${e.code ? ` ${e.code}` : ""})` : ""}`);
		}
	};
}

/** A fixed-width table: header and rows of strings. */
export function table(header: string[], rows: unknown[][]): string {
	const cells = [header, ...rows.map(r => r.map(c => (c === null || c === undefined ? "-" : String(c))))];
	const widths = header.map((_, i) => Math.max(...cells.map(r => (r[i] ?? "").length)));
	return cells.map(r => r.map((c, i) => (c ?? "").padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

export const outcomes = (m: Record<string, number> | undefined) =>
	Object.entries(m ?? {}).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ") || "-";
