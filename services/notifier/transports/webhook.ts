import type { Pace } from "../../../config";
import { ChannelPlugin, DeliveryError, Transport } from "./types";

/**
 * A chat channel reached by one webhook URL, set in `variable`: configured when the URL is set, and
 * one of the operators' channels (Slack, Discord).
 */
export function webhookChannel(name: string, variable: string, pace: Pace, make: (url: string) => Transport): ChannelPlugin {
	return {
		name,
		env: { webhookUrl: variable },
		pace,
		operators: true,
		configured: s => s.webhookUrl !== null,
		build: s => (s.webhookUrl ? make(s.webhookUrl) : null),
	};
}

const TIMEOUT_MS = 10_000;

/**
 * POSTs JSON to a chat webhook. 429 honours Retry-After (seconds, or an HTTP date; Discord also
 * puts `retry_after` in the body); other 4xx are final (the payload or the URL is wrong), 5xx and
 * network errors are tried again. `name` is used in errors; the URL (a secret) never is.
 */
export async function postJson(name: string, url: string, body: unknown): Promise<void> {
	let res: Response;
	try {
		res = await fetch(url, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify(body),
			signal: AbortSignal.timeout(TIMEOUT_MS),
		});
	} catch (err) {
		throw new DeliveryError(`${name} webhook unreachable: ${(err as Error).message}`);
	}
	if (res.ok) {
		await res.arrayBuffer().catch(() => undefined);
		return;
	}
	const text = (await res.text().catch(() => "")).slice(0, 200);
	if (res.status === 429) throw new DeliveryError(`${name} webhook: 429 rate limited`, false, retryAfterMs(res.headers.get("retry-after"), text));
	throw new DeliveryError(`${name} webhook: HTTP ${res.status} ${text}`.trim(), res.status >= 400 && res.status < 500);
}

export function retryAfterMs(header: string | null, body: string): number {
	if (header) {
		const seconds = Number(header);
		if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
		const at = Date.parse(header);
		if (Number.isFinite(at)) return Math.max(0, at - Date.now());
	}
	try {
		const s = Number(JSON.parse(body)?.retry_after);
		if (Number.isFinite(s)) return Math.max(0, s * 1000);
	} catch {
		// not JSON
	}
	return 1000;
}
