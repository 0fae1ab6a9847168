/**
 * What a gateway may answer by itself, without a hop: a product it knows to be sold out (a lease
 * from the allocator), a sale it knows has not opened (its cached schedule), and a buyer who
 * claims too often at this gateway. Everything else goes to the product's actor.
 */
export interface FlagMessage {
	productId: string;
	epoch: number;
	version: number;
	soldOut: boolean;
	leaseMs: number;
}

interface Flag {
	epoch: number;
	version: number;
	soldOut: boolean;
	until: number;
}

export class ClaimGate {
	private readonly flags = new Map<string, Flag>();
	private readonly saleAt = new Map<string, number>();
	private rateWindow = 0;
	private readonly claimsInWindow = new Map<string, number>();

	constructor(private readonly claimsPerSecond: number) {}

	/** Applies a flag unless an equal-or-newer one (by epoch, then version) is already held. */
	applyFlag(f: FlagMessage, now: number): boolean {
		const cur = this.flags.get(f.productId);
		if (cur && (f.epoch < cur.epoch || (f.epoch === cur.epoch && f.version < cur.version))) return false;
		this.flags.set(f.productId, { epoch: f.epoch, version: f.version, soldOut: f.soldOut, until: now + f.leaseMs });
		return true;
	}

	/** Sold out by a lease still running; a lapsed lease sends the next claim to the actor. */
	soldOut(productId: string, now: number): boolean {
		const f = this.flags.get(productId);
		return f !== undefined && f.soldOut && now < f.until;
	}

	/**
	 * Stock may have come back (reclaim, stock raised): stop answering SOLD_OUT until the actor
	 * says so again. The flag's epoch and version stay, so an older message cannot re-set it.
	 */
	withdrawSoldOut(productId: string): void {
		const f = this.flags.get(productId);
		if (f) f.soldOut = false;
	}

	setSchedule(productId: string, saleAt: number | null): void {
		if (saleAt === null) {
			this.saleAt.delete(productId);
			this.flags.delete(productId);
		} else this.saleAt.set(productId, saleAt);
	}

	/** The sale's opening time when it has not opened yet, by this gateway's clock. */
	notOpenUntil(productId: string, now: number): number | null {
		const at = this.saleAt.get(productId);
		return at !== undefined && now < at ? at : null;
	}

	/** Fixed one-second windows; returns ms to wait when the buyer is over the limit, else 0. */
	rateLimit(userId: string, now: number): number {
		const window = Math.floor(now / 1000);
		if (window !== this.rateWindow) {
			this.rateWindow = window;
			this.claimsInWindow.clear();
		}
		const n = (this.claimsInWindow.get(userId) ?? 0) + 1;
		this.claimsInWindow.set(userId, n);
		return n > this.claimsPerSecond ? (window + 1) * 1000 - now : 0;
	}
}
