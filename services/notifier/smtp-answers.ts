/**
 * What an SMTP answer means for a message: `later` (the server, or the provider's quota, says not
 * now: try again, and slow the channel down), or `final` (this message will never be accepted:
 * FAILED at once). Read from the enhanced status code (RFC 3463, "5.4.5") when the answer has one,
 * from the basic code (421, 550) when not. No answer at all (connection refused, timeout) is `retry`:
 * an ordinary failed try.
 */
export type SmtpVerdict = "later" | "final" | "retry";

/** 5.x.y codes that providers use to mean "not now" (Gmail's daily quota is 550 5.4.5). */
const LATER_ENHANCED_5XX = new Set(["5.4.5"]);
/** Basic codes that mean "not now, you are going too fast or I am busy". */
const LATER_BASIC = new Set([421, 450, 451, 452]);

export function enhancedCodeOf(response: string | undefined): string | null {
	const m = /^\d{3}[ -]([245])\.(\d{1,3})\.(\d{1,3})\b/.exec((response ?? "").trim());
	return m ? `${m[1]}.${m[2]}.${m[3]}` : null;
}

export function classifySmtpAnswer(responseCode: number | undefined, response: string | undefined): SmtpVerdict {
	if (typeof responseCode !== "number") return "retry";
	const enhanced = enhancedCodeOf(response);
	if (enhanced) {
		if (enhanced.startsWith("4.")) return "later";
		if (LATER_ENHANCED_5XX.has(enhanced)) return "later";
		if (enhanced.startsWith("5.")) return "final";
	}
	if (LATER_BASIC.has(responseCode) || (responseCode >= 400 && responseCode < 500)) return "later";
	if (responseCode >= 500 && responseCode < 600) return "final";
	return "retry";
}

/** The domain of MAIL_FROM's address ("Store <no-reply@shop.example>" gives "shop.example"). */
export function domainOfAddress(from: string): string | null {
	const m = /@([A-Za-z0-9.-]+\.[A-Za-z]{2,}|[A-Za-z0-9-]+)\s*>?\s*$/.exec(from.trim());
	return m ? m[1].toLowerCase() : null;
}
