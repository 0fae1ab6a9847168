/**
 * Delay before the next try after `attempts` failed tries: exponential (base * 2^(attempts-1)),
 * capped, with "equal jitter" (half fixed, half random) so that many deliveries failing together
 * (SMTP down) do not all come back at the same instant. `random` is injectable for tests.
 */
export function backoffMs(attempts: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
	const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(30, attempts - 1)));
	return Math.round(exp / 2 + random() * (exp / 2));
}
