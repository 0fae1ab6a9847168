import type { ServiceSchema } from "moleculer";
import type { ActorStore, CommitResult, Grant, Loaded, Predecessor } from "../../services/allocator/actor";

/**
 * Database faults for the allocator, stated without timing: "the next commit of this product
 * fails", "commits of this product fail until I say stop". The production store knows nothing of
 * this: a test hands the allocator a wrapped store through `allocatorWithFaults(faults)`.
 * `installFaults()` disarms everything after every test, whatever its outcome.
 */
export class CommitFaults {
	/** Commits that failed because of a fault, per product: the proof that it struck. */
	readonly struck = new Map<string, number>();
	private readonly armed = new Map<string, number>();
	/** Products whose commits hang (a node that stopped answering), and the commits held. */
	private readonly hanging = new Set<string>();
	private held: (() => void)[] = [];
	/** The injected failure's text: a test may make it look like the driver's own. */
	failureText = "injected database failure";

	/** The next `n` commits of `productId` throw as if the database failed. */
	failNextCommits(productId: string, n = 1): void {
		this.armed.set(productId, n);
	}

	/** Every commit of `productId` throws until `disarm()`. */
	failCommitsUntilStopped(productId: string): void {
		this.armed.set(productId, Infinity);
	}

	/** Every commit of `productId` hangs until `disarm()`, then fails: the node stops answering. */
	hangCommitsUntilStopped(productId: string): void {
		this.hanging.add(productId);
	}

	disarm(): void {
		this.failureText = "injected database failure";
		this.armed.clear();
		this.hanging.clear();
		const held = this.held;
		this.held = [];
		for (const release of held) release();
	}

	get isArmed(): boolean {
		return this.armed.size > 0 || this.hanging.size > 0;
	}

	strikes(productId: string): number {
		return this.struck.get(productId) ?? 0;
	}

	get totalStrikes(): number {
		let n = 0;
		for (const v of this.struck.values()) n += v;
		return n;
	}

	/** Called by the wrapped store before each commit. */
	maybeFail(productId: string): void {
		const left = this.armed.get(productId);
		if (!left) return;
		if (left === 1) this.armed.delete(productId);
		else this.armed.set(productId, left - 1);
		this.struck.set(productId, this.strikes(productId) + 1);
		throw new Error(this.failureText);
	}

	wrap(inner: ActorStore): ActorStore {
		return {
			takeOver: (productId: string): Promise<Loaded | null> => inner.takeOver(productId),
			commit: async (productId: string, epoch: number, grants: Grant[], after?: Predecessor, locked?: () => void): Promise<CommitResult> => {
				if (this.hanging.has(productId)) {
					this.struck.set(productId, this.strikes(productId) + 1);
					await new Promise<void>(release => this.held.push(release));
					throw new Error("injected database failure (hung)");
				}
				this.maybeFail(productId);
				return inner.commit(productId, epoch, grants, after, locked);
			},
			countFree: (productId: string) => inner.countFree(productId),
			...(inner.refresh ? { refresh: inner.refresh.bind(inner) } : {}),
		};
	}
}

/**
 * A mixin for the allocator service: its actors' store, wrapped by `faults`. A mixin's `started`
 * runs after the service's own (moleculer runs the merged handlers in order, each awaited), so the
 * store is wrapped before the service is registered and before any actor takes it.
 */
export function allocatorWithFaults(faults: CommitFaults): Partial<ServiceSchema<any, any>> {
	return {
		started(this: { store: ActorStore }) {
			this.store = faults.wrap(this.store);
		},
	};
}

/** One CommitFaults for a test file, disarmed after every test whether it passed or failed. */
export function installFaults(): CommitFaults {
	const faults = new CommitFaults();
	afterEach(() => faults.disarm());
	return faults;
}
