import type Redis from "ioredis";

/**
 * Fixed-window attempt counters (logins per login id and per address, sign-ups, password resets).
 * In memory for a single process; in Redis when REDIS_URL is set, so every node of a cluster shares
 * one count. An attempt is counted (`hit`, atomic: Redis INCR, or one synchronous step in memory)
 * BEFORE the work it limits, and the caller answers 429 when the count it got back is over the
 * limit: fifty attempts at one instant get fifty distinct counts, so at most `limit` get through.
 */
export interface WindowState {
	count: number;
	/** Milliseconds until the window resets (0 when nothing is counted). */
	resetInMs: number;
}

export interface FailureCounter {
	peek(key: string): Promise<WindowState>;
	hit(key: string, windowMs: number): Promise<WindowState>;
	/** Takes back one `hit` (an attempt that turned out not to be a failure), if its window still runs. */
	undo(key: string): Promise<void>;
	clear(key: string): Promise<void>;
	close(): Promise<void>;
}

export class MemoryFailureCounter implements FailureCounter {
	private readonly windows = new Map<string, { count: number; resetAt: number }>();
	private readonly sweeper: NodeJS.Timeout;

	constructor() {
		this.sweeper = setInterval(() => {
			const now = Date.now();
			for (const [k, w] of this.windows) if (w.resetAt <= now) this.windows.delete(k);
		}, 60_000);
		this.sweeper.unref();
	}

	async peek(key: string): Promise<WindowState> {
		const w = this.windows.get(key);
		const now = Date.now();
		if (!w || w.resetAt <= now) return { count: 0, resetInMs: 0 };
		return { count: w.count, resetInMs: w.resetAt - now };
	}

	async hit(key: string, windowMs: number): Promise<WindowState> {
		const now = Date.now();
		let w = this.windows.get(key);
		if (!w || w.resetAt <= now) {
			w = { count: 0, resetAt: now + windowMs };
			this.windows.set(key, w);
		}
		w.count += 1;
		return { count: w.count, resetInMs: w.resetAt - now };
	}

	async undo(key: string): Promise<void> {
		const w = this.windows.get(key);
		if (w && w.resetAt > Date.now() && w.count > 0) w.count -= 1;
	}

	async clear(key: string): Promise<void> {
		this.windows.delete(key);
	}

	async close(): Promise<void> {
		clearInterval(this.sweeper);
	}
}

const UNDO = `if (tonumber(redis.call('get', KEYS[1]) or '0') > 0) then return redis.call('decr', KEYS[1]) end return 0`;

export class RedisFailureCounter implements FailureCounter {
	constructor(private readonly redis: Redis, private readonly prefix: string) {}

	async peek(key: string): Promise<WindowState> {
		const k = this.prefix + key;
		const [[, count], [, ttl]] = (await this.redis.multi().get(k).pttl(k).exec()) as [[null, string | null], [null, number]];
		return { count: count === null ? 0 : Number(count), resetInMs: Math.max(0, ttl) };
	}

	async hit(key: string, windowMs: number): Promise<WindowState> {
		const k = this.prefix + key;
		// PEXPIRE NX starts the window on the first failure only.
		const res = (await this.redis.multi().incr(k).pexpire(k, windowMs, "NX").pttl(k).exec()) as [
			[null, number], [null, number], [null, number]
		];
		return { count: res[0][1], resetInMs: Math.max(0, res[2][1]) };
	}

	async undo(key: string): Promise<void> {
		// Only while the window runs: a DECR after expiry would leave a -1 with no expiry.
		await this.redis.eval(UNDO, 1, this.prefix + key);
	}

	async clear(key: string): Promise<void> {
		await this.redis.del(this.prefix + key);
	}

	async close(): Promise<void> {
		// The shared client is closed by its owner.
	}
}

/**
 * Redis's shared counts while Redis answers; this node's own counts (memory) while it does not,
 * so logins and sign-ups go on through a Redis outage with limits per node instead of per
 * cluster (a node's limit is still the configured one: the cluster as a whole lets through at
 * most nodes × limit). Redis is not asked while its client reconnects (no wait on its
 * retries); a failed command falls back for that call. `onChange` hears each switch, once.
 */
export class FallbackFailureCounter implements FailureCounter {
	private readonly local = new MemoryFailureCounter();
	private readonly shared: RedisFailureCounter;
	private down = false;

	constructor(
		private readonly redis: Redis,
		prefix: string,
		private readonly onChange: (degraded: boolean, reason: string) => void
	) {
		this.shared = new RedisFailureCounter(redis, prefix);
		// Back to shared counts as soon as the client is ready again.
		redis.on("ready", () => this.mark(false, "Redis is back"));
		// Known before the next attempt needs it, so /api/health says so at once.
		redis.on("close", () => this.mark(true, "Redis connection closed"));
	}

	get degraded(): boolean {
		return this.down;
	}

	private mark(down: boolean, reason: string): void {
		if (this.down === down) return;
		this.down = down;
		this.onChange(down, reason);
	}

	private async either<T>(shared: () => Promise<T>, local: () => Promise<T>): Promise<T> {
		// Still connecting at start: its commands queue and run once connected. Lost and
		// reconnecting: each command would wait out the retries, so this node counts alone.
		if (this.redis.status === "reconnecting" || this.redis.status === "close" || this.redis.status === "end") {
			this.mark(true, `Redis is ${this.redis.status}`);
			return local();
		}
		try {
			return await shared();
		} catch (err) {
			this.mark(true, `Redis failed: ${(err as Error).message}`);
			return local();
		}
	}

	peek(key: string) {
		return this.either(() => this.shared.peek(key), () => this.local.peek(key));
	}

	hit(key: string, windowMs: number) {
		return this.either(() => this.shared.hit(key, windowMs), () => this.local.hit(key, windowMs));
	}

	undo(key: string) {
		return this.either(() => this.shared.undo(key), () => this.local.undo(key));
	}

	clear(key: string) {
		// Both: a count made while Redis was down must not outlive a successful login.
		return this.either(async () => { await this.local.clear(key); await this.shared.clear(key); }, () => this.local.clear(key));
	}

	async close(): Promise<void> {
		await this.local.close();
	}
}
