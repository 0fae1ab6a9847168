import type { DataSource, QueryRunner } from "typeorm";
import { isUniqueViolation } from "../../lib/errors";
import { INDEX_PATHS_ONLY } from "../../lib/sql";
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

/** A product's live units (free, held, paid), one snapshot. */
export const liveUnitsSql = `SELECT id, unit, user_id, status, held_at, expires_at, epoch, seq FROM slots
	WHERE product_id = $1 AND status IN ('AVAILABLE', 'HELD', 'PAID')`;

/**
 * The batch commit, one statement: the fence (a share lock on the product at our epoch, so a
 * takeover waits for this commit and every commit after it finds the epoch moved), the conditional
 * grant of each row, and the outbox rows of the "slot granted" messages, sent after the answer.
 * A pipelined batch also takes a share lock on its predecessor's last slot row: that waits for the
 * predecessor's transaction and returns the row as it left it, so this batch commits only behind a
 * predecessor that committed (else `after_ok` is false and it is refused whole). The lock is taken
 * by id alone: a condition on the status would be judged on this statement's snapshot, from before
 * the predecessor committed. Parameters: $1 product, $2 epoch, $3 TTL seconds, $4 slot ids,
 * $5 buyers, $6 seqs, $7-$9 the predecessor's last slot id, epoch and seq (or nulls). Run after
 * INDEX_PATHS_ONLY: every row is reached by its key, at any batch size.
 */
export const grantBatchSql = `WITH fence AS (
	   SELECT ARRAY(SELECT g::text FROM unnest($5::bigint[]) AS g WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = g)) AS unknown
	   FROM products p WHERE p.id = $1 AND p.epoch = $2 FOR SHARE OF p
	 ), locked AS (
	   -- By id alone: a row the snapshot sees is locked (waiting for the predecessor), then
	   -- re-read; its status is judged below on the version the lock returned.
	   SELECT s.status, s.epoch, s.seq FROM slots s WHERE $7::bigint IS NOT NULL AND s.id = $7::bigint FOR SHARE OF s
	 ), pred AS (
	   SELECT 1 FROM locked l WHERE l.status IN ('HELD', 'PAID') AND l.epoch = $8::int AND l.seq = $9::bigint
	 ), granted AS (
	   UPDATE slots s
	   SET status = 'HELD', user_id = g.user_id, held_at = now(),
	       expires_at = now() + make_interval(secs => $3), epoch = $2, seq = g.seq
	   FROM unnest($4::bigint[], $5::bigint[], $6::bigint[]) AS g(slot_id, user_id, seq)
	   -- Each row by its primary key. Written plainly, the product and status tests match the
	   -- slots_free index, which the planner may then scan whole for every batch (27 ms of a
	   -- 29 ms commit at 58,000 free slots). "IS TRUE" keeps them out of index selection.
	   WHERE s.id = g.slot_id AND (s.product_id = $1 AND s.status = 'AVAILABLE') IS TRUE
	     AND EXISTS (SELECT 1 FROM fence WHERE cardinality(fence.unknown) = 0)
	     AND ($7::bigint IS NULL OR EXISTS (SELECT 1 FROM pred))
	   RETURNING s.id, s.held_at, s.expires_at
	 ), outboxed AS (
	   INSERT INTO outbox (topic, slot_id) SELECT 'slot.granted', id FROM granted RETURNING 1
	 )
	 SELECT EXISTS (SELECT 1 FROM fence) AS fenced,
	        ($7::bigint IS NULL OR EXISTS (SELECT 1 FROM pred)) AS after_ok,
	        (SELECT unknown FROM fence) AS unknown,
	        (SELECT json_agg(json_build_array(id::text, held_at, expires_at)) FROM granted) AS granted,
	        (SELECT count(*) FROM outboxed) AS outboxed`;

/**
 * The "slot granted" messages to send: those of the given slots ($1 ids) right after their commit,
 * or (the sweep) any left pending longer than $1 seconds by a crash. Locked while sent (SKIP
 * LOCKED: two nodes never send the same one).
 */
const pendingOutbox = (where: string) => `SELECT o.id, o.slot_id, u.email, u.login_id, p.name, s.expires_at, p.id AS product_id
	 FROM outbox o JOIN slots s ON s.id = o.slot_id JOIN users u ON u.id = s.user_id JOIN products p ON p.id = s.product_id
	 WHERE o.done_at IS NULL AND o.topic = 'slot.granted' AND ${where}
	 ORDER BY o.id LIMIT 1000
	 FOR UPDATE OF o SKIP LOCKED`;
export const outboxOfSlotsSql = pendingOutbox("o.slot_id = ANY($1::bigint[])");
export const outboxLeftPendingSql = pendingOutbox("o.created_at < now() - make_interval(secs => $1)");

/** The owner's next epoch, only from its own: nothing when another node took the product over. */
export const ownEpochBumpSql = `UPDATE products SET epoch = epoch + 1 WHERE id = $1 AND epoch = $2 RETURNING epoch, stock, sale_at`;

/** A product's free units above a slot id: the ones a stock raise added. */
export const freeUnitsAboveSql = `SELECT id, unit FROM slots WHERE id > $2::bigint AND product_id = $1 AND status = 'AVAILABLE'`;

/** Free units of a product, by the slots_free index. */
export const countFreeSql = `SELECT count(*)::int AS n FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'`;

/**
 * The actor's store on PostgreSQL. The epoch is the fence: a takeover bumps it, and every batch
 * commit first takes a share lock on the product row with its own epoch, so a takeover waits
 * for a commit in flight and every commit after the takeover finds the epoch moved.
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
				await q.query(`UPDATE products SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch, stock, sale_at`, [productId])
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
		return this.inTransaction(async q => (await q.query(countFreeSql, [productId]))[0].n);
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

/** Whether a product exists: one indexed read, cached by the caller, before an actor is spent on an id. */
export async function productExists(ds: DataSource, productId: string): Promise<boolean> {
	const rows = await ds.query(`SELECT 1 FROM products WHERE id = $1`, [productId]);
	return rows.length === 1;
}

/**
 * Deletes outbox rows sent more than `keepSeconds` ago, `batch` rows per statement (short locks,
 * short transactions) and at most `maxBatches` statements per call, so one pass stays bounded
 * however much piled up; the next pass goes on. Returns how many went.
 */
export async function pruneSentOutbox(ds: DataSource, keepSeconds: number, batch = 1000, maxBatches = 20): Promise<number> {
	let total = 0;
	for (let i = 0; i < maxBatches; i++) {
		const [rows] = await ds.query(
			`DELETE FROM outbox WHERE id IN (
			   SELECT id FROM outbox WHERE done_at IS NOT NULL AND done_at < now() - make_interval(secs => $1)
			   ORDER BY done_at LIMIT $2 FOR UPDATE SKIP LOCKED)
			 RETURNING 1`,
			[keepSeconds, batch]
		);
		total += rows.length;
		if (rows.length < batch) break;
	}
	return total;
}
