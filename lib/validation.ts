import { Validators } from "moleculer";

/**
 * Moleculer's validator (fastest-validator) with one rule added to every rule type: a string
 * value must not contain control characters (Unicode category Cc: C0, DEL, C1). PostgreSQL
 * refuses NUL in text (a 500 at the INSERT), and the others have no business in a login id, a
 * name or an e-mail (header injection, terminal escapes in logs). A rule with `multiline: true`
 * (a product's description) may hold tab, line feed and carriage return.
 *
 * Done once here, for every action's `params`, rather than field by field: a field added
 * tomorrow is covered without anyone remembering to.
 */
const CONTROL = /\p{Cc}/u;
const CONTROL_EXCEPT_LINES = /[^\P{Cc}\t\n\r]/u;

export const CONTROL_MESSAGE = "The '{field}' field must not contain control characters.";

/** True when `text` holds a character the store refuses in accepted text. */
export function hasControl(text: string, multiline = false): boolean {
	return (multiline ? CONTROL_EXCEPT_LINES : CONTROL).test(text);
}

type RuleFunction = (
	this: FastestLike,
	rule: { schema: Record<string, unknown>; messages: Record<string, string> },
	path: string,
	context: unknown
) => { source: string; sanitized?: boolean };

interface FastestLike {
	rules: Record<string, RuleFunction>;
	add(type: string, fn: RuleFunction): void;
	addMessage(name: string, message: string): void;
	makeError(o: { type: string; actual: string; messages: Record<string, string> }): string;
}

/**
 * Each of fastest-validator's rule functions generates the source of its check. Every one is
 * wrapped so that its check starts with this one, on the value as it came in (before a rule's
 * `convert`: `new Date("2\u0000026-11-26")` is a valid date).
 */
function refuseControls(v: FastestLike): void {
	v.addMessage("stringControl", CONTROL_MESSAGE);
	for (const [type, original] of Object.entries(v.rules)) {
		v.add(type, function (rule, path, context) {
			const res = original.call(this, rule, path, context);
			const re = rule.schema.multiline === true ? CONTROL_EXCEPT_LINES : CONTROL;
			res.source =
				`if (typeof value === "string" && ${String(re)}.test(value)) {
					${this.makeError({ type: "stringControl", actual: "value", messages: rule.messages })}
					return value;
				}
				` + res.source;
			return res;
		});
	}
}

export class StoreValidator extends Validators.Fastest {
	constructor() {
		super();
		refuseControls((this as unknown as { validator: FastestLike }).validator);
	}
}

/**
 * Exactly one e-mail address, dot-atom form (name@example.com): no list ("a@x.com,b@y.com"), no
 * display name, no quoted local part, no group. nodemailer sends to every address a recipient
 * string names, so any field that ends up as a recipient must be one address (issue 22, point 5).
 */
export const ONE_EMAIL =
	/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

export const isOneEmail = (text: string): boolean => text.length <= 254 && ONE_EMAIL.test(text);

/** The params rule of an e-mail field: trimmed, lower-cased, one address. */
export const emailRule = {
	type: "string",
	max: 254,
	trim: true,
	lowercase: true,
	pattern: ONE_EMAIL,
	messages: { stringPattern: "The 'email' field must be exactly one e-mail address, such as name@example.com." },
};
