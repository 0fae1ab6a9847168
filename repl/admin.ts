import { asAdmin, guarded, ReplCommand, say } from "./command";

/**
 * Any admin action as an admin, from the REPL: `admin products.create --name Drop --price 1000
 * --stock 10 --saleAt 2026-11-26T10:00:00Z`, `admin products.update --id 3 --stock 20`. Moleculer's
 * own `call` answers 401 for these: an identity spelled out in meta is not believed (lib/identity.ts).
 */
export const adminCommand: ReplCommand = {
	command: "admin <action>",
	description: "Call an admin action (products, stock, schedule, notifications) as an administrator, with --param value pairs",
	allowUnknownOptions: true,
	action: guarded(async (broker, args) => {
		// Ids and names stay strings; numbers the action expects as numbers are given as numbers.
		const params = { ...args.options };
		for (const k of ["id", "productId", "slotId", "name", "description", "saleAt"]) if (params[k] !== undefined) params[k] = String(params[k]);
		const res = await broker.call(String(args.action), params, asAdmin(broker));
		say(JSON.stringify(res, null, 2));
	}),
};
