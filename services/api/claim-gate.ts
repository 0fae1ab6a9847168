import type { SoldOutFlag } from "../../contracts";

/**
 * What a gateway may answer by itself, without a hop: a product it knows to be sold out (a lease
 * from the allocator), a sale it knows has not opened (its cached schedule, a lease too), and a
 * buyer who claims too often at this gateway. Everything else goes to the product's actor. Both
 * leases lapse unless renewed, so a lost message (a re-opening, an earlier saleAt) delays a sale by
 * seconds, never until an old time: the next claim goes to the actor, which answers from memory
 * and renews the lease with what it knows.
 */

interface Flag {
	epoch: number;
	version: number;
	soldOut: boolean;
	until: number;
}

export class ClaimGate {
	private readonly flags = new Map<string, Flag>();
	/** Opening times, each with the end of its lease. */
	private readonly saleAt = new Map<string, { at: number; until: number }>();
	private rateWindow = 0;
	private readonly claimsInWindow = new Map<string, number>();

	constructor(
		private readonly claimsPerSecond: number,
		/** How long a schedule entry from products (not the actor) is believed without renewal. */
		private readonly scheduleLeaseMs = 2000
	) {}

	/** Applies a flag unless an equal-or-newer one (by epoch, then version) is already held. */
	applyFlag(f: SoldOutFlag, now: number): boolean {
		const cur = this.flags.get(f.productId);
		if (cur && (f.epoch < cur.epoch || (f.epoch === cur.epoch && f.version < cur.version))) return false;
		this.flags.set(f.productId, { epoch: f.epoch, version: f.version, soldOut: f.soldOut, until: now + f.leaseMs });
		// The actor's own view of the schedule renews (or, when open, withdraws) the not-open lease.
		if (f.saleAt !== undefined) this.saleAt.set(f.productId, { at: Date.parse(f.saleAt), until: now + f.leaseMs });
		else this.saleAt.delete(f.productId);
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

	/** A schedule heard from products (its list, or products.changed): believed for one lease. */
	setSchedule(productId: string, saleAt: number | null, now = Date.now()): void {
		if (saleAt === null) {
			this.saleAt.delete(productId);
			this.flags.delete(productId);
		} else this.saleAt.set(productId, { at: saleAt, until: now + this.scheduleLeaseMs });
	}

	/** The sale's opening time when it has not opened yet by this gateway's clock and the lease runs. */
	notOpenUntil(productId: string, now: number): number | null {
		const s = this.saleAt.get(productId);
		return s !== undefined && now < s.at && now < s.until ? s.at : null;
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
