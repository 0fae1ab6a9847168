import type { DataSource } from "typeorm";
import { addSecondsSql } from "../../store/claim-stats";
import { addEpochsSql } from "../../store/claim-epochs";

/**
 * The sale report's facts, counted in memory as the actor answers and written to PostgreSQL about
 * once a second, off the claim path: per product, per second and outcome, how many claims; per
 * product, epoch and outcome, how many, the lowest and highest seq and the first and last answer
 * time. Several allocator nodes (or a takeover) add to the same rows. A failed write keeps its
 * counts for the next one, up to a bound, so a database blip loses nothing but a long outage
 * cannot grow memory without limit.
 */

/** Outcomes the actor answers or refuses with; anything else (NOT_FOUND, MOVED...) is not a sale's fact. */
const RECORDED = new Set(["GRANTED", "SOLD_OUT", "ALREADY_HOLDING", "SALE_NOT_OPEN", "BUSY", "UNAVAILABLE"]);
const MAX_PENDING_KEYS = 100_000;
export const CLAIM_STATS_FLUSH_MS = 1_000;

interface EpochFact {
	n: number;
	minSeq: number;
	maxSeq: number;
	firstAt: number;
	lastAt: number;
}

export class ClaimStats {
	/** "productId|second|outcome" -> count */
	private perSecond = new Map<string, number>();
	/** "productId|epoch|outcome" -> fact */
	private perEpoch = new Map<string, EpochFact>();
	private timer: NodeJS.Timeout | null = null;
	private flushing: Promise<void> | null = null;

	constructor(
		private readonly db: () => DataSource | undefined,
		private readonly warn: (msg: string) => void,
		private readonly now: () => number = Date.now
	) {}

	/** One answer of a product's actor. Cheap: two map updates. */
	record(productId: string, outcome: string, epoch?: number, seq?: number): void {
		if (!RECORDED.has(outcome)) return;
		const at = this.now();
		const k = `${productId}|${Math.floor(at / 1000)}|${outcome}`;
		this.perSecond.set(k, (this.perSecond.get(k) ?? 0) + 1);
		if (epoch === undefined || seq === undefined) return;
		const e = `${productId}|${epoch}|${outcome}`;
		const f = this.perEpoch.get(e);
		if (!f) this.perEpoch.set(e, { n: 1, minSeq: seq, maxSeq: seq, firstAt: at, lastAt: at });
		else {
			f.n += 1;
			if (seq < f.minSeq) f.minSeq = seq;
			if (seq > f.maxSeq) f.maxSeq = seq;
			f.lastAt = at;
		}
	}

	start(): this {
		const tick = () => {
			this.timer = setTimeout(() => void this.flush().finally(() => this.timer && tick()), CLAIM_STATS_FLUSH_MS);
		};
		tick();
		return this;
	}

	/** Stops the timer and writes what is left. */
	async stop(): Promise<void> {
		if (this.timer) clearTimeout(this.timer);
		this.timer = null;
		await this.flush();
	}

	/** Writes the counts gathered since the last flush, in one transaction of two statements. */
	flush(): Promise<void> {
		if (!this.flushing) this.flushing = this.write().finally(() => (this.flushing = null));
		return this.flushing;
	}

	private async write(): Promise<void> {
		const db = this.db();
		if (!db?.isInitialized || (this.perSecond.size === 0 && this.perEpoch.size === 0)) return;
		const seconds = this.perSecond;
		const epochs = this.perEpoch;
		this.perSecond = new Map();
		this.perEpoch = new Map();
		try {
			await db.transaction(async em => {
				if (seconds.size) await em.query(addSecondsSql, secondsColumns(seconds));
				if (epochs.size) await em.query(addEpochsSql, epochColumns(epochs));
			});
		} catch (err) {
			this.warn(`claim stats not written yet (${(err as Error).message}); kept for the next flush`);
			for (const [k, n] of seconds) if (this.perSecond.size < MAX_PENDING_KEYS || this.perSecond.has(k)) this.perSecond.set(k, (this.perSecond.get(k) ?? 0) + n);
			for (const [k, f] of epochs) {
				const cur = this.perEpoch.get(k);
				if (!cur) this.perEpoch.set(k, f);
				else this.perEpoch.set(k, { n: cur.n + f.n, minSeq: Math.min(cur.minSeq, f.minSeq), maxSeq: Math.max(cur.maxSeq, f.maxSeq), firstAt: Math.min(cur.firstAt, f.firstAt), lastAt: Math.max(cur.lastAt, f.lastAt) });
			}
		}
	}
}

function secondsColumns(m: Map<string, number>): unknown[] {
	const p: string[] = [], s: number[] = [], o: string[] = [], n: number[] = [];
	for (const [k, count] of m) {
		const [productId, second, outcome] = k.split("|");
		p.push(productId);
		s.push(Number(second));
		o.push(outcome);
		n.push(count);
	}
	return [p, s, o, n];
}

function epochColumns(m: Map<string, EpochFact>): unknown[] {
	const cols: unknown[][] = [[], [], [], [], [], [], [], []];
	for (const [k, f] of m) {
		const [productId, epoch, outcome] = k.split("|");
		[productId, Number(epoch), outcome, f.n, f.minSeq, f.maxSeq, f.firstAt / 1000, f.lastAt / 1000].forEach((v, i) => cols[i].push(v));
	}
	return cols;
}
