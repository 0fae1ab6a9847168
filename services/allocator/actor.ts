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
 * Pipelining: up to `pipeline` batches (2) are in flight at once, each decided on the state the
 * ones before it will leave if they commit. A batch is sent only once the one before it has
 * passed its statement (its rows are locked; the store says so with `locked()`) and waits for
 * its COMMIT, and it names that predecessor (its last grant): the store commits it only once
 * that grant is committed (PostgreSQL: a share lock on that slot row waits for the
 * predecessor's transaction, then reads the row as it left it). So a later batch never commits
 * when an earlier one did not, commits land in batch order, and the second batch's statement
 * overlaps the first's COMMIT. Results are taken in batch order too. When a batch is refused or fails, the actor stops
 * deciding ("draining"), waits for the batches behind it (refused in turn, or committed if the
 * failed one had in fact committed), answers or requeues each as its own result says, and
 * reloads once none is left in flight.
 *
 * Invariants (asserted by `check()` and the simulation test): free slots and holders are
 * disjoint; free + held + tentatively granted = stock as loaded; at most one active or
 * tentative slot per buyer; within one epoch, answers go out in seq order of decision, so
 * no SOLD_OUT has a lower seq than a GRANTED.
 */

import type { Outcome, SoldOutFlag } from "../../contracts";

export type { Outcome, SoldOutFlag };

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

/** The grant a pipelined commit must find committed before it commits (the previous batch's last). */
export interface Predecessor {
	slotId: string;
	epoch: number;
	seq: number;
}

export type CommitResult =
	| { ok: true; granted: Map<string, { heldAt: Date; expiresAt: Date }> }
	| { ok: false; reason: "FENCED" | "CONFLICT"; unknownBuyers?: string[] };

/** The actor's only I/O. `takeOver` returns null when the product no longer exists. */
export interface ActorStore {
	takeOver(productId: string): Promise<Loaded | null>;
	/**
	 * Throws when the database fails; answers `ok: false` when the commit was refused. With
	 * `after`, commits only once that grant is committed (waiting for its transaction), and is
	 * refused (CONFLICT) when it never was. Calls `locked` once the grants passed every check and
	 * only the COMMIT is left (a store that never calls it gets one batch at a time).
	 */
	commit(productId: string, epoch: number, grants: Grant[], after?: Predecessor, locked?: () => void): Promise<CommitResult>;
	countFree(productId: string): Promise<number>;
	/**
	 * Stock or schedule changed, nothing else: bump the epoch from `epoch` (null when it moved, or
	 * the product is gone), and read the stock, the sale time and the free units with an id above
	 * `sinceId` (the units a stock raise added), not every unit. Optional: an actor whose store has
	 * none takes the product over.
	 */
	refresh?(productId: string, epoch: number, sinceId: bigint): Promise<{ epoch: number; stock: number; saleAt: Date; added: FreeSlot[] } | null>;
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
	/** Slot rows read: every live unit at a takeover, the added ones when a stock change is read in. */
	read?(units: number): void;
	commitFailed?(reason: "FENCED" | "CONFLICT" | "ERROR"): void;
	/** Every answer and refusal; answers carry their place in line (epoch, seq). */
	answered?(outcome: Outcome | ClaimRefused["reason"], epoch?: number, seq?: number): void;
	/** Asked after another owner fenced this actor off: false = step down instead of taking it back. */
	stillOwner?(): boolean;
}

export interface ActorOptions {
	queueLimit: number;
	batchMax: number;
	batchWindowMs: number;
	flagLeaseMs: number;
	/** While sold out, how often a claim may trigger a look for units that came back. */
	recheckMs: number;
	/** Batch commits in flight at once (1 = one after another). */
	pipeline: number;
}

export const DEFAULT_ACTOR_OPTIONS: ActorOptions = {
	queueLimit: 20_000,
	batchMax: 256,
	batchWindowMs: 1,
	flagLeaseMs: 2_000,
	recheckMs: 1_000,
	pipeline: 2,
};

/** The actor refused or could not take a claim; the service turns these into HTTP errors. */
export class ClaimRefused extends Error {
	constructor(readonly reason: "BUSY" | "UNAVAILABLE" | "NOT_FOUND" | "UNKNOWN_BUYER" | "MOVED", message: string) {
		super(message);
		this.name = "ClaimRefused";
	}
}

/** Slot ids are bigint identities in PostgreSQL; a store with other ids (the simulation's) reads as 0. */
const slotIdNumber = (id: string): bigint => (/^[0-9]{1,19}$/.test(id) ? BigInt(id) : 0n);

const movedAway = () => new ClaimRefused("MOVED", "This product's sale moved to another node; try again");

interface Claim {
	userId: string;
	seq: number;
	/** Arrival order across epochs: re-decided claims keep their place by it. */
	arrival: number;
	slot?: FreeSlot;
	/** Later claims of the same buyer, waiting for this one's grant. */
	followers?: Claim[];
	/** The same buyer's claims that arrived while this one was undecided: no seq, no queue space, this one's answer. */
	twins?: { resolve(a: Answer): void; reject(e: Error): void }[];
	resolve(a: Answer): void;
	reject(e: Error): void;
}

/** A batch being committed, and its result once known (results are taken in batch order). */
interface Batch {
	claims: Claim[];
	epoch: number;
	started: number;
	/** Its statement passed; only its COMMIT is left, so a batch may follow it. */
	locked: boolean;
	result?: { ok: true; value: CommitResult } | { ok: false; error: unknown };
}

/** draining: a batch was refused or failed; no decisions until the batches behind it are settled. */
type Phase = "idle" | "loading" | "ready" | "draining" | "gone" | "retired";

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
	/** Tentative grants collecting for the next batch, and the batches being committed, oldest first. */
	private open: Claim[] = [];
	private inFlight: Batch[] = [];
	/** While draining: claims to decide again after the reload, and whether to step down instead. */
	private redo: Claim[] = [];
	private stepDown = false;
	private pendingByUser = new Map<string, Claim>();
	/** Each buyer's claim taken and not yet answered: a second claim of theirs joins it at the door (one place in line per buyer). */
	private undecided = new Map<string, Claim>();
	private batchTimer = false;
	private reloadWanted = false;
	/** A stock or schedule change to read in (only what was added) at the next pause between commits. */
	private refreshWanted = false;
	/** The highest slot id this actor has read: a stock raise adds rows above it. */
	private maxSlotId = 0n;
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
		let n = this.queue.length + this.open.length + this.redo.length;
		for (const b of this.inFlight) n += b.claims.length;
		return n;
	}

	get remaining(): number {
		return this.free.length;
	}

	get isGone(): boolean {
		return this.phase === "gone" || this.phase === "retired";
	}

	get idle(): boolean {
		return this.depth === 0 && this.phase !== "loading" && this.phase !== "draining";
	}

	/** Takes one claim into the queue. The promise settles with the answer, or ClaimRefused. */
	claim(userId: string): Promise<Answer> {
		if (this.phase === "gone") return Promise.reject(new ClaimRefused("NOT_FOUND", "Product not found"));
		if (this.phase === "retired") return Promise.reject(movedAway());
		// One place in line per buyer: a second claim (another tab, a re-sent request) while the
		// first is undecided takes no seq and no queue space, and gets the first one's answer.
		const first = this.undecided.get(userId);
		if (first) return new Promise<Answer>((resolve, reject) => (first.twins ??= []).push({ resolve, reject }));
		// A buyer who holds a live slot is answered with it, and its own place in line, at the door.
		const held = this.phase === "ready" && !this.reloadWanted ? this.holders.get(userId) : undefined;
		if (held && (held.status === "PAID" || held.expiresAt.getTime() > this.clock.now()))
			return Promise.resolve({ outcome: "ALREADY_HOLDING", epoch: held.epoch, seq: held.seq, slot: held });
		if (this.depth >= this.opts.queueLimit) {
			this.hooks.answered?.("BUSY");
			return Promise.reject(new ClaimRefused("BUSY", "Too many claims waiting for this product; try again shortly"));
		}
		return new Promise<Answer>((resolve, reject) => {
			const c: Claim = { userId, seq: ++this.seq, arrival: ++this.arrivals, resolve, reject };
			this.undecided.set(userId, c);
			this.queue.push(c);
			this.pump();
		});
	}

	/** Stock, schedule or slots changed elsewhere: take the product over again before deciding more. */
	invalidate(): void {
		if (this.isGone) return;
		this.reloadWanted = true;
		this.pump();
	}

	/**
	 * Stock or schedule changed, and nothing else (no reclaim, no deletion). Like a takeover it
	 * waits for the batches in flight and starts a new epoch (so the order check still reads
	 * "within an epoch, no stock came back"), but it reads only the units added since this actor
	 * last read, not every unit: a 100,000-unit product re-read whole at each change stalled its
	 * claims. What it cannot account for (stock lowered, a unit that came back) falls back to a
	 * full takeover: free + taken must equal the new stock, as always.
	 */
	changed(): void {
		if (this.isGone) return;
		if (!this.store.refresh) return this.invalidate();
		this.refreshWanted = true;
		this.pump();
	}

	private async refresh(): Promise<void> {
		this.phase = "loading";
		this.refreshWanted = false;
		let r: Awaited<ReturnType<NonNullable<ActorStore["refresh"]>>>;
		try {
			r = await this.store.refresh!(this.productId, this.epoch, this.maxSlotId);
		} catch {
			r = null;
		}
		this.phase = "ready";
		if (!r) return this.invalidate(); // fenced, gone or failed: a full takeover sorts it out
		const known = new Set(this.free.map(f => f.id));
		const added = r.added.filter(a => !known.has(a.id));
		const taken = this.stock - this.free.length; // held and paid (nothing is in flight): free + taken = stock
		this.epoch = r.epoch;
		this.hooks.read?.(r.added.length);
		if (taken + this.free.length + added.length !== r.stock) return this.invalidate();
		for (const a of added) if (slotIdNumber(a.id) > this.maxSlotId) this.maxSlotId = slotIdNumber(a.id);
		if (added.length) this.free = [...this.free, ...added].sort((x, y) => y.unit - x.unit);
		this.stock = r.stock;
		this.saleAt = r.saleAt;
		// Claims still waiting get their numbers in the new epoch, in arrival order.
		this.seq = 0;
		for (const c of this.queue) c.seq = ++this.seq;
		this.hooks.tookOver?.(this.epoch);
		this.soldOut = this.free.length === 0 && this.clock.now() >= this.saleAt.getTime();
		this.flagVersion += 1;
		this.publishFlag();
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

	/**
	 * Internal consistency; throws on the first broken invariant. Only the simulation test calls it
	 * (issue 24: kept on purpose): the invariants read the actor's private state (free list, batches
	 * in flight, holders), which no other seam shows, and they belong beside the code that keeps them.
	 */
	check(): void {
		const freeIds = new Set(this.free.map(f => f.id));
		if (freeIds.size !== this.free.length) throw new Error("a free slot is listed twice");
		const tentative = [...this.inFlight.flatMap(b => b.claims), ...this.open];
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
			if (this.inFlight.length || this.open.length) return this.flushSoon();
			return void this.load();
		}
		if (this.refreshWanted) {
			if (this.inFlight.length || this.open.length) return this.flushSoon();
			return void this.refresh();
		}
		const now = this.clock.now();
		while (this.queue.length) {
			const c = this.queue[0];
			if (now < this.saleAt.getTime()) {
				this.queue.shift();
				this.answer(c, { outcome: "SALE_NOT_OPEN", epoch: this.epoch, seq: c.seq, saleAt: this.saleAt });
				// The gateways' not-open answer is a lease: renew it, as the sold-out one.
				if (now - this.lastFlagAt >= this.opts.flagLeaseMs / 2) this.publishFlag();
				continue;
			}
			const held = this.holders.get(c.userId);
			if (held && held.status === "HELD" && held.expiresAt.getTime() <= now && now - this.lastRecheckAt >= this.opts.recheckMs) {
				// Past its expiry by this actor's clock: a reclaim whose message was lost would leave this
				// buyer answered ALREADY_HOLDING with a dead slot. Reload first, then decide this claim.
				this.lastRecheckAt = now;
				this.reloadWanted = true;
				return this.pump();
			}
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
			if (this.inFlight.length || this.open.length) {
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

	/** Whether another batch may be sent now: room in the pipeline, and the last one sent past its statement. */
	private canSend(): boolean {
		const last = this.inFlight[this.inFlight.length - 1];
		return this.inFlight.length < this.opts.pipeline && (!last || last.locked);
	}

	private flushSoon(): void {
		if (this.batchTimer || !this.canSend()) return;
		this.batchTimer = true;
		this.clock.later(() => {
			this.batchTimer = false;
			this.flush();
		}, this.opts.batchWindowMs);
	}

	/** Group commit: one transaction for every grant collected, fenced by the epoch, after the batch before it. */
	private flush(): void {
		if (!this.canSend() || this.open.length === 0 || this.phase !== "ready") return;
		// At most batchMax: while a batch waits for the one before it, more than that may have collected.
		const claims = this.open.length <= this.opts.batchMax ? this.open : this.open.slice(0, this.opts.batchMax);
		this.open = claims === this.open ? [] : this.open.slice(this.opts.batchMax);
		const prev = this.inFlight[this.inFlight.length - 1];
		const last = prev?.claims[prev.claims.length - 1];
		const batch: Batch = { claims, epoch: this.epoch, started: this.clock.now(), locked: false };
		this.inFlight.push(batch);
		const grants = claims.map(c => ({ slotId: c.slot!.id, userId: c.userId, seq: c.seq }));
		const after = last ? { slotId: last.slot!.id, epoch: prev.epoch, seq: last.seq } : undefined;
		const locked = () => {
			batch.locked = true;
			if (this.phase !== "ready") return;
			if (this.open.length >= this.opts.batchMax) this.flush();
			else if (this.open.length) this.flushSoon();
		};
		this.store.commit(this.productId, batch.epoch, grants, after, locked).then(
			value => this.settled(batch, { ok: true, value }),
			error => this.settled(batch, { ok: false, error })
		);
	}

	/** A commit's result: taken in batch order, so a later batch's answers never overtake an earlier one's. */
	private settled(batch: Batch, result: NonNullable<Batch["result"]>): void {
		batch.result = result;
		while (this.inFlight.length && this.inFlight[0].result) {
			const head = this.inFlight.shift()!;
			const r = head.result!;
			if (r.ok && r.value.ok) this.granted(head, r.value.granted);
			else if (r.ok && !r.value.ok) this.refused(head, r.value);
			else this.failed(head, r.ok ? null : r.error);
		}
		if (this.phase === "draining") {
			if (this.inFlight.length) return;
			return this.drained();
		}
		if (this.open.length >= this.opts.batchMax) this.flush();
		this.pump();
	}

	private granted(batch: Batch, granted: Map<string, { heldAt: Date; expiresAt: Date }>): void {
		const slots: ActiveSlot[] = [];
		for (const c of batch.claims) {
			const times = granted.get(c.slot!.id)!;
			const slot: ActiveSlot = { id: c.slot!.id, userId: c.userId, status: "HELD", heldAt: times.heldAt, expiresAt: times.expiresAt, epoch: batch.epoch, seq: c.seq };
			slots.push(slot);
			this.holders.set(c.userId, slot);
			this.pendingByUser.delete(c.userId);
			this.answer(c, { outcome: "GRANTED", epoch: batch.epoch, seq: c.seq, slot });
			for (const f of c.followers ?? []) this.answer(f, { outcome: "ALREADY_HOLDING", epoch: batch.epoch, seq: f.seq, slot });
		}
		this.hooks.committed?.(slots, batch.claims.length, this.clock.now() - batch.started);
	}

	/**
	 * Refused whole: the batch's claims are decided again after a takeover, in arrival order, with
	 * every other undecided claim, except those of buyers the database does not know (a token for
	 * a deleted account).
	 */
	private refused(batch: Batch, result: Extract<CommitResult, { ok: false }>): void {
		this.hooks.commitFailed?.(result.reason);
		this.phase = "draining";
		const unknown = new Set(result.unknownBuyers ?? []);
		for (const c of batch.claims) {
			this.pendingByUser.delete(c.userId);
			if (!unknown.has(c.userId)) {
				this.redo.push(c);
				continue;
			}
			const refused = new ClaimRefused("UNKNOWN_BUYER", "The account behind this token does not exist");
			this.fail(c, refused);
			for (const f of c.followers ?? []) this.fail(f, refused);
			c.followers = undefined;
		}
		if (unknown.size)
			this.queue = this.queue.filter(c => {
				if (!unknown.has(c.userId)) return true;
				this.fail(c, new ClaimRefused("UNKNOWN_BUYER", "The account behind this token does not exist"));
				return false;
			});
		// Another node owns the product now: once drained, hand the claims back so their callers retry there.
		if (result.reason === "FENCED" && this.hooks.stillOwner && !this.hooks.stillOwner()) this.stepDown = true;
	}

	/** The database failed: this batch's claims get 503 (the rest is innocent and decided again after a reload). */
	private failed(batch: Batch, err: unknown): void {
		this.hooks.commitFailed?.("ERROR");
		this.phase = "draining";
		const refused = new ClaimRefused("UNAVAILABLE", `The sale could not record claims just now; try again (${(err as Error)?.message ?? err})`);
		for (const c of batch.claims) {
			this.pendingByUser.delete(c.userId);
			this.fail(c, refused);
			for (const f of c.followers ?? []) this.fail(f, refused);
		}
	}

	/** Every batch behind a refused or failed one is settled: requeue what is undecided, then reload (or step down). */
	private drained(): void {
		const back: Claim[] = [];
		for (const c of [...this.redo, ...this.open]) {
			back.push(c, ...(c.followers ?? []));
			c.followers = undefined;
			c.slot = undefined;
		}
		this.redo = [];
		this.open = [];
		this.pendingByUser.clear();
		this.queue = [...back, ...this.queue].sort((a, b) => a.arrival - b.arrival);
		this.phase = "ready";
		if (this.stepDown) {
			this.stepDown = false;
			this.phase = "retired";
			return this.failAll(movedAway());
		}
		void this.load();
	}

	/** Takeover: bump the epoch and load the product's state in one transaction. */
	private async load(): Promise<void> {
		if (this.phase === "loading" || this.isGone) return;
		this.phase = "loading";
		this.reloadWanted = false;
		this.refreshWanted = false;
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
		this.hooks.read?.(loaded.free.length + loaded.active.length);
		this.stock = loaded.stock;
		this.saleAt = loaded.saleAt;
		this.free = [...loaded.free].sort((a, b) => b.unit - a.unit);
		this.holders = new Map(loaded.active.map(s => [s.userId, s]));
		this.maxSlotId = 0n;
		for (const x of [...loaded.free, ...loaded.active]) if (slotIdNumber(x.id) > this.maxSlotId) this.maxSlotId = slotIdNumber(x.id);
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
		this.hooks.answered?.(a.outcome, a.epoch, a.seq);
		if (this.undecided.get(c.userId) === c) this.undecided.delete(c.userId);
		c.resolve(a);
		for (const t of c.twins ?? []) t.resolve(a);
	}

	private fail(c: Claim, e: ClaimRefused): void {
		this.hooks.answered?.(e.reason);
		if (this.undecided.get(c.userId) === c) this.undecided.delete(c.userId);
		c.reject(e);
		for (const t of c.twins ?? []) t.reject(e);
	}

	/** Fails everything not yet decided (a batch being committed is answered by its commit). */
	private failAll(e: ClaimRefused): void {
		const all = [...this.redo, ...this.open, ...this.queue];
		for (const c of this.open) this.pendingByUser.delete(c.userId);
		this.redo = [];
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
		const flag: SoldOutFlag = { productId: this.productId, epoch: this.epoch, version: this.flagVersion, soldOut: this.soldOut, leaseMs: this.opts.flagLeaseMs };
		if (this.clock.now() < this.saleAt.getTime()) flag.saleAt = this.saleAt.toISOString();
		return flag;
	}

	private publishFlag(): void {
		this.lastFlagAt = this.clock.now();
		this.hooks.flag?.(this.flagOf());
	}
}
