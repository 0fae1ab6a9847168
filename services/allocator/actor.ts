/**
 * One product's actor: the whole claim path of a sale, decided in memory, committed in groups.
 *
 * Claims are taken strictly in arrival order. Each is numbered (`seq`, within the actor's
 * `epoch`) when taken, and decided in that order:
 *   sale not open yet       -> SALE_NOT_OPEN
 *   buyer holds a slot      -> ALREADY_HOLDING (the HELD or PAID slot)
 *   buyer's grant in flight -> waits for it (then ALREADY_HOLDING, or re-decided with it)
 *   a free slot             -> tentative grant, answered GRANTED once its batch commits
 *   no free slot            -> SOLD_OUT, but only once nothing is left in flight: a batch
 *                              that fails gives its slots back, so until it commits the queue
 *                              waits rather than turning anyone away.
 * Grants are committed in batches (one transaction each, fenced by the epoch). A refused commit
 * (fenced, a row no longer free, the one-per-buyer index) rolls back whole; the actor takes the
 * product over again (new epoch) and re-decides every undecided claim in its original order. A
 * database failure answers that batch's claims 503 and the actor reloads before taking more.
 *
 * Invariants (asserted by `check()` and the simulation test): free slots and holders are
 * disjoint; free + held + tentatively granted = stock as loaded; at most one active or
 * tentative slot per buyer; within one epoch, answers go out in seq order of decision, so
 * no SOLD_OUT has a lower seq than a GRANTED.
 */

export type Outcome = "GRANTED" | "SOLD_OUT" | "ALREADY_HOLDING" | "SALE_NOT_OPEN";

export interface ActiveSlot {
	id: string;
	userId: string;
	status: "HELD" | "PAID";
	heldAt: Date;
	expiresAt: Date;
	epoch: number;
	seq: number;
}

export interface Answer {
	outcome: Outcome;
	epoch: number;
	seq: number;
	slot?: ActiveSlot;
	saleAt?: Date;
}

export interface FreeSlot {
	id: string;
	unit: number;
}

/** What a takeover reads, in the same transaction that bumped the epoch. */
export interface Loaded {
	epoch: number;
	stock: number;
	saleAt: Date;
	free: FreeSlot[];
	active: ActiveSlot[];
}

export interface Grant {
	slotId: string;
	userId: string;
	seq: number;
}

export type CommitResult =
	| { ok: true; granted: Map<string, { heldAt: Date; expiresAt: Date }> }
	| { ok: false; reason: "FENCED" | "CONFLICT"; unknownBuyers?: string[] };

/** The actor's only I/O. `takeOver` returns null when the product no longer exists. */
export interface ActorStore {
	takeOver(productId: string): Promise<Loaded | null>;
	/** Throws when the database fails; answers `ok: false` when the commit was refused. */
	commit(productId: string, epoch: number, grants: Grant[]): Promise<CommitResult>;
	countFree(productId: string): Promise<number>;
}

export interface ActorClock {
	now(): number;
	/** Runs `fn` after `ms` (0 = as soon as the current work is done). */
	later(fn: () => void, ms: number): void;
}

export interface ActorHooks {
	/** A batch committed: its grants, for the outbox emitter and metrics. */
	committed?(grants: ActiveSlot[], batchSize: number, commitMs: number): void;
	/** The product's sold-out state or its lease changed: broadcast to the gateways. */
	flag?(flag: SoldOutFlag): void;
	/** The actor took the product over (a new epoch). */
	tookOver?(epoch: number): void;
	commitFailed?(reason: "FENCED" | "CONFLICT" | "ERROR"): void;
	answered?(outcome: Outcome | ClaimRefused["reason"]): void;
	/** Asked after another owner fenced this actor off: false = step down instead of taking it back. */
	stillOwner?(): boolean;
}

export interface SoldOutFlag {
	productId: string;
	epoch: number;
	version: number;
	soldOut: boolean;
	/** How long a gateway may answer from this flag without hearing it again. */
	leaseMs: number;
}

export interface ActorOptions {
	queueLimit: number;
	batchMax: number;
	batchWindowMs: number;
	flagLeaseMs: number;
	/** While sold out, how often a claim may trigger a look for units that came back. */
	recheckMs: number;
}

export const DEFAULT_ACTOR_OPTIONS: ActorOptions = {
	queueLimit: 20_000,
	batchMax: 256,
	batchWindowMs: 1,
	flagLeaseMs: 2_000,
	recheckMs: 1_000,
};

/** The actor refused or could not take a claim; the service turns these into HTTP errors. */
export class ClaimRefused extends Error {
	constructor(readonly reason: "BUSY" | "UNAVAILABLE" | "NOT_FOUND" | "UNKNOWN_BUYER" | "MOVED", message: string) {
		super(message);
		this.name = "ClaimRefused";
	}
}

const movedAway = () => new ClaimRefused("MOVED", "This product's sale moved to another node; try again");

interface Claim {
	userId: string;
	seq: number;
	/** Arrival order across epochs: re-decided claims keep their place by it. */
	arrival: number;
	slot?: FreeSlot;
	/** Later claims of the same buyer, waiting for this one's grant. */
	followers?: Claim[];
	resolve(a: Answer): void;
	reject(e: Error): void;
}

type Phase = "idle" | "loading" | "ready" | "gone" | "retired";

export class ProductActor {
	epoch = 0;
	private seq = 0;
	private arrivals = 0;
	private phase: Phase = "idle";
	private stock = 0;
	private saleAt = new Date(0);
	/** Free slots, highest unit first, so pop() hands out the lowest unit. */
	private free: FreeSlot[] = [];
	private holders = new Map<string, ActiveSlot>();
	/** Claims taken but not decided yet, in arrival order. */
	private queue: Claim[] = [];
	/** Tentative grants collecting for the next batch, and the batch being committed. */
	private open: Claim[] = [];
	private committing: Claim[] | null = null;
	private pendingByUser = new Map<string, Claim>();
	private batchTimer = false;
	private reloadWanted = false;
	private flagVersion = 0;
	private soldOut = false;
	private lastFlagAt = -Infinity;
	private lastRecheckAt = -Infinity;
	private rechecking = false;

	constructor(
		readonly productId: string,
		private readonly store: ActorStore,
		private readonly clock: ActorClock,
		private readonly hooks: ActorHooks = {},
		private readonly opts: ActorOptions = DEFAULT_ACTOR_OPTIONS
	) {}

	/** Claims waiting for a decision or a commit. */
	get depth(): number {
		return this.queue.length + this.open.length + (this.committing?.length ?? 0);
	}

	get remaining(): number {
		return this.free.length;
	}

	get isGone(): boolean {
		return this.phase === "gone" || this.phase === "retired";
	}

	get idle(): boolean {
		return this.depth === 0 && this.phase !== "loading";
	}

	/** Takes one claim into the queue. The promise settles with the answer, or ClaimRefused. */
	claim(userId: string): Promise<Answer> {
		if (this.phase === "gone") return Promise.reject(new ClaimRefused("NOT_FOUND", "Product not found"));
		if (this.phase === "retired") return Promise.reject(movedAway());
		if (this.depth >= this.opts.queueLimit) {
			this.hooks.answered?.("BUSY");
			return Promise.reject(new ClaimRefused("BUSY", "Too many claims waiting for this product; try again shortly"));
		}
		return new Promise<Answer>((resolve, reject) => {
			this.queue.push({ userId, seq: ++this.seq, arrival: ++this.arrivals, resolve, reject });
			this.pump();
		});
	}

	/** Stock, schedule or slots changed elsewhere: take the product over again before deciding more. */
	invalidate(): void {
		if (this.isGone) return;
		this.reloadWanted = true;
		this.pump();
	}

	/** A held slot was paid: a repeat claim now answers ALREADY_HOLDING with the PAID slot. */
	markPaid(slotId: string): void {
		for (const [userId, slot] of this.holders)
			if (slot.id === slotId) this.holders.set(userId, { ...slot, status: "PAID" });
	}

	/** Current sold-out flag, for a gateway that starts mid-sale. */
	currentFlag(): SoldOutFlag | null {
		if (this.phase !== "ready") return null;
		return this.flagOf();
	}

	/** Internal consistency; throws on the first broken invariant. */
	check(): void {
		const freeIds = new Set(this.free.map(f => f.id));
		if (freeIds.size !== this.free.length) throw new Error("a free slot is listed twice");
		const tentative = [...(this.committing ?? []), ...this.open];
		const taken = [...this.holders.values()].map(h => h.id).concat(tentative.map(c => c.slot!.id));
		for (const id of taken) if (freeIds.has(id)) throw new Error(`slot ${id} is both free and taken`);
		if (new Set(taken).size !== taken.length) throw new Error("a slot is taken twice");
		if (this.phase === "ready" && this.free.length + taken.length !== this.stock)
			throw new Error(`free ${this.free.length} + taken ${taken.length} != stock ${this.stock}`);
		for (const c of tentative) {
			if (this.holders.has(c.userId)) throw new Error(`buyer ${c.userId} holds and is granted again`);
			if (this.pendingByUser.get(c.userId) !== c) throw new Error(`buyer ${c.userId} has two grants in flight`);
		}
	}

	// --- the decision loop -------------------------------------------------------------

	private pump(): void {
		if (this.phase === "gone") return this.failAll(new ClaimRefused("NOT_FOUND", "Product not found"));
		if (this.phase === "retired") return this.failAll(movedAway());
		if (this.phase === "idle") return void this.load();
		if (this.phase !== "ready") return;
		if (this.reloadWanted) {
			// Reload only between commits: in-flight grants are decided on the state they saw.
			if (this.committing || this.open.length) return this.flushSoon();
			return void this.load();
		}
		const now = this.clock.now();
		while (this.queue.length) {
			const c = this.queue[0];
			if (now < this.saleAt.getTime()) {
				this.queue.shift();
				this.answer(c, { outcome: "SALE_NOT_OPEN", epoch: this.epoch, seq: c.seq, saleAt: this.saleAt });
				continue;
			}
			const held = this.holders.get(c.userId);
			if (held) {
				this.queue.shift();
				this.answer(c, { outcome: "ALREADY_HOLDING", epoch: this.epoch, seq: c.seq, slot: held });
				continue;
			}
			const leader = this.pendingByUser.get(c.userId);
			if (leader) {
				this.queue.shift();
				(leader.followers ??= []).push(c);
				continue;
			}
			const slot = this.free.pop();
			if (slot) {
				this.queue.shift();
				c.slot = slot;
				this.pendingByUser.set(c.userId, c);
				this.open.push(c);
				if (this.open.length >= this.opts.batchMax) this.flush();
				continue;
			}
			if (this.committing || this.open.length) {
				// Sold out only if every grant in flight commits: wait and see.
				this.flushSoon();
				return;
			}
			this.queue.shift();
			this.answer(c, { outcome: "SOLD_OUT", epoch: this.epoch, seq: c.seq });
			this.soldOutSeen(now);
		}
		if (this.open.length) this.flushSoon();
	}

	private flushSoon(): void {
		if (this.batchTimer || this.committing) return;
		this.batchTimer = true;
		this.clock.later(() => {
			this.batchTimer = false;
			this.flush();
		}, this.opts.batchWindowMs);
	}

	/** Group commit: one transaction for every grant collected, fenced by the epoch. */
	private flush(): void {
		if (this.committing || this.open.length === 0 || this.phase !== "ready") return;
		const batch = this.open;
		this.open = [];
		this.committing = batch;
		const epoch = this.epoch;
		const started = this.clock.now();
		const grants = batch.map(c => ({ slotId: c.slot!.id, userId: c.userId, seq: c.seq }));
		this.store.commit(this.productId, epoch, grants).then(
			result => this.afterCommit(batch, epoch, started, result),
			err => this.afterCommitError(batch, err)
		);
	}

	private afterCommit(batch: Claim[], epoch: number, started: number, result: CommitResult): void {
		this.committing = null;
		if (!result.ok) {
			this.hooks.commitFailed?.(result.reason);
			// Refused whole: every undecided claim, this batch's included, is decided again after a takeover,
			// except those of buyers the database does not know (a token for a deleted account).
			const unknown = new Set(result.unknownBuyers ?? []);
			const kept = batch.filter(c => {
				if (!unknown.has(c.userId)) return true;
				const refused = new ClaimRefused("UNKNOWN_BUYER", "The account behind this token does not exist");
				this.fail(c, refused);
				for (const f of c.followers ?? []) this.fail(f, refused);
				return false;
			});
			this.requeue(kept);
			this.queue = this.queue.filter(c => {
				if (!unknown.has(c.userId)) return true;
				this.fail(c, new ClaimRefused("UNKNOWN_BUYER", "The account behind this token does not exist"));
				return false;
			});
			if (result.reason === "FENCED" && this.hooks.stillOwner && !this.hooks.stillOwner()) {
				// Another node owns the product now: hand the claims back so their callers retry there.
				this.phase = "retired";
				return this.failAll(movedAway());
			}
			return void this.load();
		}
		const slots: ActiveSlot[] = [];
		for (const c of batch) {
			const times = result.granted.get(c.slot!.id)!;
			const slot: ActiveSlot = { id: c.slot!.id, userId: c.userId, status: "HELD", heldAt: times.heldAt, expiresAt: times.expiresAt, epoch, seq: c.seq };
			slots.push(slot);
			this.holders.set(c.userId, slot);
			this.pendingByUser.delete(c.userId);
			this.answer(c, { outcome: "GRANTED", epoch, seq: c.seq, slot });
			for (const f of c.followers ?? []) this.answer(f, { outcome: "ALREADY_HOLDING", epoch, seq: f.seq, slot });
		}
		this.hooks.committed?.(slots, batch.length, this.clock.now() - started);
		if (this.open.length >= this.opts.batchMax) this.flush();
		this.pump();
	}

	private afterCommitError(batch: Claim[], err: unknown): void {
		this.committing = null;
		this.hooks.commitFailed?.("ERROR");
		const refused = new ClaimRefused("UNAVAILABLE", `The sale could not record claims just now; try again (${(err as Error)?.message ?? err})`);
		for (const c of batch) {
			this.pendingByUser.delete(c.userId);
			this.fail(c, refused);
			for (const f of c.followers ?? []) this.fail(f, refused);
		}
		// The rest is innocent: decided again, in order, after the actor reloads.
		this.requeue([]);
		void this.load();
	}

	/** Puts undecided claims back in arrival order; their slots return to the pool on reload. */
	private requeue(batch: Claim[]): void {
		const back: Claim[] = [];
		for (const c of [...batch, ...this.open]) {
			back.push(c, ...(c.followers ?? []));
			c.followers = undefined;
			c.slot = undefined;
		}
		this.open = [];
		this.pendingByUser.clear();
		this.queue = [...back, ...this.queue].sort((a, b) => a.arrival - b.arrival);
	}

	/** Takeover: bump the epoch and load the product's state in one transaction. */
	private async load(): Promise<void> {
		if (this.phase === "loading" || this.isGone) return;
		this.phase = "loading";
		this.reloadWanted = false;
		let loaded: Loaded | null;
		try {
			loaded = await this.store.takeOver(this.productId);
		} catch (err) {
			// No state to decide on: turn the waiting claims away now rather than let them time out.
			this.phase = "idle";
			const refused = new ClaimRefused("UNAVAILABLE", `The sale is not reachable just now; try again (${(err as Error)?.message ?? err})`);
			const waiting = this.queue;
			this.queue = [];
			for (const c of waiting) this.fail(c, refused);
			return;
		}
		if (!loaded) {
			this.phase = "gone";
			return this.failAll(new ClaimRefused("NOT_FOUND", "Product not found"));
		}
		this.epoch = loaded.epoch;
		this.stock = loaded.stock;
		this.saleAt = loaded.saleAt;
		this.free = [...loaded.free].sort((a, b) => b.unit - a.unit);
		this.holders = new Map(loaded.active.map(s => [s.userId, s]));
		this.pendingByUser.clear();
		// Claims still waiting get their numbers in the new epoch, in arrival order.
		this.seq = 0;
		for (const c of this.queue) c.seq = ++this.seq;
		this.phase = "ready";
		this.hooks.tookOver?.(this.epoch);
		this.soldOut = this.free.length === 0 && this.clock.now() >= this.saleAt.getTime();
		this.flagVersion += 1;
		this.publishFlag();
		this.pump();
	}

	// --- answers and flags ---------------------------------------------------------------

	private answer(c: Claim, a: Answer): void {
		this.hooks.answered?.(a.outcome);
		c.resolve(a);
	}

	private fail(c: Claim, e: ClaimRefused): void {
		this.hooks.answered?.(e.reason);
		c.reject(e);
	}

	/** Fails everything not yet decided (a batch being committed is answered by its commit). */
	private failAll(e: ClaimRefused): void {
		const all = [...this.open, ...this.queue];
		for (const c of this.open) this.pendingByUser.delete(c.userId);
		this.open = [];
		this.queue = [];
		for (const c of all) {
			this.fail(c, e);
			for (const f of c.followers ?? []) this.fail(f, e);
		}
	}

	private soldOutSeen(now: number): void {
		if (!this.soldOut) {
			this.soldOut = true;
			this.flagVersion += 1;
			this.publishFlag();
		} else if (now - this.lastFlagAt >= this.opts.flagLeaseMs / 2) {
			this.publishFlag(); // renew the lease
		}
		// A lost "re-opened" message must not strand a unit: look for one now and then.
		if (!this.rechecking && now - this.lastRecheckAt >= this.opts.recheckMs) {
			this.lastRecheckAt = now;
			this.rechecking = true;
			this.store.countFree(this.productId).then(
				n => {
					this.rechecking = false;
					if (n > 0) this.invalidate();
				},
				() => (this.rechecking = false)
			);
		}
	}

	private flagOf(): SoldOutFlag {
		return { productId: this.productId, epoch: this.epoch, version: this.flagVersion, soldOut: this.soldOut, leaseMs: this.opts.flagLeaseMs };
	}

	private publishFlag(): void {
		this.lastFlagAt = this.clock.now();
		this.hooks.flag?.(this.flagOf());
	}
}
