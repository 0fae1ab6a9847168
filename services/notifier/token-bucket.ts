/**
 * A token bucket: `ratePerMinute` tokens a minute, up to `burst` saved. `take()` resolves when a
 * token is there (in order of asking); `holdFor(ms)` empties it and adds nothing for that long
 * (the provider said "slow down": every send of this channel waits, not just the one refused).
 */
export class TokenBucket {
	private tokens: number;
	private last = Date.now();
	private heldUntil = 0;
	private queue: Promise<void> = Promise.resolve();

	constructor(readonly ratePerMinute: number, readonly burst: number) {
		this.tokens = burst;
	}

	private refill(now: number): void {
		const from = Math.max(this.last, this.heldUntil);
		if (now > from) this.tokens = Math.min(this.burst, this.tokens + ((now - from) * this.ratePerMinute) / 60_000);
		this.last = Math.max(now, this.last);
	}

	/** Waits for one token. Callers are served one after another, so the rate holds however many wait. */
	take(): Promise<void> {
		const turn = this.queue.then(async () => {
			for (;;) {
				const now = Date.now();
				this.refill(now);
				if (now >= this.heldUntil && this.tokens >= 1) {
					this.tokens -= 1;
					return;
				}
				const wait = now < this.heldUntil ? this.heldUntil - now : Math.ceil(((1 - this.tokens) * 60_000) / this.ratePerMinute);
				await new Promise(r => setTimeout(r, Math.max(1, wait)));
			}
		});
		this.queue = turn.catch(() => undefined);
		return turn;
	}

	holdFor(ms: number): void {
		const now = Date.now();
		this.refill(now);
		this.tokens = 0;
		this.heldUntil = Math.max(this.heldUntil, now + ms);
	}
}
