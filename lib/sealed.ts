import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";

/**
 * Secrets inside a message's text (a password-reset link), sealed for the notifier alone
 * (issue 22, point 3). The publisher seals the secret part with a key derived from the nodes'
 * secret (AES-256-GCM); the message travels (JetStream keeps it) and sits in the delivery log
 * (30 days, listed to every admin) holding only the sealed form. The notifier opens it at the
 * moment it hands the e-mail to SMTP; a listing shows a placeholder instead. Only in the local
 * mailbox (no SMTP_URL), where reading the mail from the log is the point, does a listing open it.
 */
const OPEN = "⟦sealed:";
const CLOSE = "⟧";
const MARK = /⟦sealed:([A-Za-z0-9_-]+)⟧/g;

/** What a listing shows in place of a sealed part. */
export const SEALED_PLACEHOLDER = "[link hidden: sent to the recipient only]";
/** What a mail says when its sealed part cannot be opened (the node secret changed: a restart with a generated one). */
export const UNSEALABLE = "[this link is no longer valid: request a new one]";

const keys = new Map<string, Buffer>();
function keyOf(secret: string): Buffer {
	let key = keys.get(secret);
	if (!key) {
		key = createHmac("sha256", secret).update("dopamine sealed message text v1").digest();
		keys.set(secret, key);
	}
	return key;
}

/** `plain`, sealed: a marker that can sit inside any text. */
export function seal(secret: string, plain: string): string {
	const iv = randomBytes(12);
	const cipher = createCipheriv("aes-256-gcm", keyOf(secret), iv);
	const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
	return `${OPEN}${Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64url")}${CLOSE}`;
}

function open(secret: string, packed: string): string | null {
	try {
		const raw = Buffer.from(packed, "base64url");
		if (raw.length < 29) return null;
		const decipher = createDecipheriv("aes-256-gcm", keyOf(secret), raw.subarray(0, 12));
		decipher.setAuthTag(raw.subarray(12, 28));
		return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
	} catch {
		return null;
	}
}

/** The text as the recipient gets it: every sealed part opened (or, if it cannot be, UNSEALABLE). */
export function unsealText(secret: string, text: string): string {
	return text.includes(OPEN) ? text.replace(MARK, (_, packed: string) => open(secret, packed) ?? UNSEALABLE) : text;
}

/** The text as a listing shows it: sealed parts replaced by the placeholder. */
export function hideSealed(text: string): string {
	return text.includes(OPEN) ? text.replace(MARK, SEALED_PLACEHOLDER) : text;
}
