/**
 * Group commit for small writes: rows handed in while a write is in flight go together in the
 * next one, so a burst of N rows costs a couple of statements (and WAL flushes), not N. Each
 * caller is answered when the write that carried its row is done, and a failed write fails
 * every caller in it. Nothing waits for a batch to fill: the first row of a quiet moment is
 * written on the next turn of the event loop (rows handed in by the same turn join it).
 */
export class GroupWriter<T> {
	private pending: { item: T; resolve(): void; reject(err: unknown): void }[] = [];
	private writing = false;

	constructor(private readonly write: (items: T[]) => Promise<void>) {}

	add(item: T): Promise<void> {
		return new Promise<void>((resolve, reject) => {
			this.pending.push({ item, resolve, reject });
			if (!this.writing) void this.drain();
		});
	}

	private async drain(): Promise<void> {
		this.writing = true;
		await new Promise<void>(resolve => setImmediate(resolve));
		while (this.pending.length) {
			const group = this.pending;
			this.pending = [];
			try {
				await this.write(group.map(g => g.item));
				for (const g of group) g.resolve();
			} catch (err) {
				for (const g of group) g.reject(err);
			}
		}
		this.writing = false;
	}
}
