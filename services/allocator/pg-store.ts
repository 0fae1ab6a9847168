import type { DataSource, QueryRunner } from "typeorm";
import { isUniqueViolation } from "../../lib/errors";
import { INDEX_PATHS_ONLY } from "../../lib/sql";
import { freeCountSql, freeUnitsAboveSql, grantBatchSql, liveUnitsSql } from "../../store/slots";
import { ownEpochBumpSql, takeOverEpochSql } from "../../store/products";
import { pruneSentOutboxSql } from "../../store/outbox";
import type { ActiveSlot, ActorStore, CommitResult, Grant, Loaded, Predecessor } from "./actor";

interface SlotRow {
	id: string;
	user_id: string;
	status: "HELD" | "PAID";
	held_at: Date;
	expires_at: Date;
	epoch: number | null;
	seq: string | null;
}

/**
 * The actor's store on PostgreSQL. The epoch is the fence: a takeover bumps it, and every batch
 * commit first takes a share lock on the product row with its own epoch, so a takeover waits
 * for a commit in flight and every commit after the takeover finds the epoch moved. The statement
 * texts are in store/slots.ts (the units, the batch commit) and store/products.ts (the epoch);
 * this file runs them: transactions, INDEX_PATHS_ONLY first, the fence's verdicts.
 */
export class PgActorStore implements ActorStore {
	constructor(private readonly ds: DataSource, private readonly slotTtlSeconds: number) {}

	private async inTransaction<T>(work: (q: QueryRunner) => Promise<T>): Promise<T> {
		const q = this.ds.createQueryRunner();
		await q.connect();
		try {
			await q.startTransaction();
			await q.query(INDEX_PATHS_ONLY);
			const out = await work(q);
			if (q.isTransactionActive) await q.commitTransaction();
			return out;
		} catch (err) {
			if (q.isTransactionActive) await q.rollbackTransaction().catch(() => undefined);
			throw err;
		} finally {
			await q.release();
		}
	}

	/**
	 * Bump the epoch, then read every live unit in one statement (one snapshot). The UPDATE comes
	 * first and on its own: it waits for a commit in flight (which holds the product row FOR SHARE)
	 * and for a stock change (which holds it FOR UPDATE), so the read that follows sees them; its
	 * row lock keeps stock and saleAt still until this transaction ends. Reading free and active
	 * units in one statement means a reclaim (EXPIRED + a fresh AVAILABLE row) is seen whole or
	 * not at all, never half: two reads would see the unit neither free nor held.
	 */
	takeOver(productId: string): Promise<Loaded | null> {
		return this.inTransaction(async q => {
			const bumped: { epoch: number; stock: number; sale_at: Date }[] = (
				await q.query(takeOverEpochSql, [productId])
			)[0];
			if (bumped.length === 0) return null;
			const live: (Omit<SlotRow, "status"> & { unit: number; status: SlotRow["status"] | "AVAILABLE" })[] = await q.query(liveUnitsSql, [productId]);
			const { epoch, stock, sale_at } = bumped[0];
			return {
				epoch,
				stock,
				saleAt: sale_at,
				free: live.filter(r => r.status === "AVAILABLE").map(f => ({ id: String(f.id), unit: f.unit })),
				active: live.filter(r => r.status !== "AVAILABLE").map(r => toActive(r as SlotRow)),
			};
		});
	}

	/**
	 * A stock or schedule change, read in by the owner: the epoch bumped from its own (a takeover
	 * elsewhere since makes this null), then the free units above `sinceId`, which is what a stock
	 * raise adds (new rows have the highest ids: a short walk of the primary key), not every unit.
	 * The UPDATE waits for a stock change in flight (it holds the product row), so the read sees it.
	 */
	refresh(productId: string, epoch: number, sinceId: bigint): Promise<{ epoch: number; stock: number; saleAt: Date; added: { id: string; unit: number }[] } | null> {
		return this.inTransaction(async q => {
			const [bumped]: { epoch: number; stock: number; sale_at: Date }[] = (await q.query(ownEpochBumpSql, [productId, epoch]))[0];
			if (!bumped) return null;
			const added: { id: string; unit: number }[] = await q.query(freeUnitsAboveSql, [productId, sinceId.toString()]);
			return { epoch: bumped.epoch, stock: bumped.stock, saleAt: bumped.sale_at, added: added.map(a => ({ id: String(a.id), unit: a.unit })) };
		});
	}

	async commit(productId: string, epoch: number, grants: Grant[], after?: Predecessor, locked?: () => void): Promise<CommitResult> {
		try {
			return await this.inTransaction(async q => {
				const [r]: { fenced: boolean; after_ok: boolean; unknown: string[] | null; granted: [string, string, string][] | null }[] = await q.query(
					grantBatchSql,
					[productId, epoch, this.slotTtlSeconds, grants.map(g => g.slotId), grants.map(g => g.userId), grants.map(g => g.seq), after?.slotId ?? null, after?.epoch ?? null, after?.seq ?? null]
				);
				if (!r.fenced) {
					await q.rollbackTransaction();
					return { ok: false as const, reason: "FENCED" as const };
				}
				if (!r.after_ok) {
					await q.rollbackTransaction();
					return { ok: false as const, reason: "CONFLICT" as const };
				}
				if (r.unknown && r.unknown.length > 0) {
					await q.rollbackTransaction();
					return { ok: false as const, reason: "CONFLICT" as const, unknownBuyers: r.unknown };
				}
				const rows = r.granted ?? [];
				if (rows.length !== grants.length) {
					await q.rollbackTransaction();
					return { ok: false as const, reason: "CONFLICT" as const };
				}
				const granted = new Map(rows.map(([id, heldAt, expiresAt]) => [id, { heldAt: new Date(heldAt), expiresAt: new Date(expiresAt) }]));
				// Only the COMMIT is left: the actor may send its next batch, which waits on these rows.
				locked?.();
				return { ok: true as const, granted };
			});
		} catch (err) {
			// The one-active-slot-per-buyer index refused a row: a refusal, not a failure.
			if (isUniqueViolation(err)) return { ok: false, reason: "CONFLICT" };
			throw err;
		}
	}

	async countFree(productId: string): Promise<number> {
		return this.inTransaction(async q => (await q.query(freeCountSql, [productId]))[0].n);
	}
}

function toActive(r: SlotRow): ActiveSlot {
	return {
		id: String(r.id),
		userId: String(r.user_id),
		status: r.status,
		heldAt: r.held_at,
		expiresAt: r.expires_at,
		epoch: r.epoch ?? 0,
		seq: r.seq === null ? 0 : Number(r.seq),
	};
}

/**
 * Deletes outbox rows sent more than `keepSeconds` ago, `batch` rows per statement (short locks,
 * short transactions) and at most `maxBatches` statements per call, so one pass stays bounded
 * however much piled up; the next pass goes on. Returns how many went.
 */
export async function pruneSentOutbox(ds: DataSource, keepSeconds: number, batch = 1000, maxBatches = 20): Promise<number> {
	let total = 0;
	for (let i = 0; i < maxBatches; i++) {
		const [rows] = await ds.query(pruneSentOutboxSql, [keepSeconds, batch]);
		total += rows.length;
		if (rows.length < batch) break;
	}
	return total;
}
