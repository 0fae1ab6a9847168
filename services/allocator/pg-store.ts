import type { DataSource, QueryRunner } from "typeorm";
import { isUniqueViolation } from "../../lib/errors";
import type { ActiveSlot, ActorStore, CommitResult, Grant, Loaded } from "./actor";

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
 * for a commit in flight and every commit after the takeover finds the epoch moved.
 */
export class PgActorStore implements ActorStore {
	/** For fault tests: the next `failCommits` commits throw as if the database failed. */
	readonly faults = { failCommits: 0, failed: 0 };

	constructor(private readonly ds: DataSource, private readonly slotTtlSeconds: number) {}

	private async inTransaction<T>(work: (q: QueryRunner) => Promise<T>): Promise<T> {
		const q = this.ds.createQueryRunner();
		await q.connect();
		try {
			await q.startTransaction();
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

	takeOver(productId: string): Promise<Loaded | null> {
		return this.inTransaction(async q => {
			const bumped: { epoch: number; stock: number; sale_at: Date }[] = (
				await q.query(`UPDATE products SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch, stock, sale_at`, [productId])
			)[0];
			if (bumped.length === 0) return null;
			const free: { id: string; unit: number }[] = await q.query(
				`SELECT id, unit FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'`,
				[productId]
			);
			const active: SlotRow[] = await q.query(
				`SELECT id, user_id, status, held_at, expires_at, epoch, seq FROM slots
				 WHERE product_id = $1 AND status IN ('HELD', 'PAID')`,
				[productId]
			);
			const { epoch, stock, sale_at } = bumped[0];
			return {
				epoch,
				stock,
				saleAt: sale_at,
				free: free.map(f => ({ id: String(f.id), unit: f.unit })),
				active: active.map(toActive),
			};
		});
	}

	async commit(productId: string, epoch: number, grants: Grant[]): Promise<CommitResult> {
		if (this.faults.failCommits > 0) {
			this.faults.failCommits -= 1;
			this.faults.failed += 1;
			throw new Error("injected database failure");
		}
		try {
			return await this.inTransaction(async q => {
				// One statement: the fence (a share lock on the product at our epoch, so a takeover waits
				// for this commit and every commit after it finds the epoch moved), the conditional grant
				// of each row, and the outbox rows of the "slot granted" messages, sent after the answer.
				const [r]: { fenced: boolean; unknown: string[] | null; granted: [string, string, string][] | null }[] = await q.query(
					`WITH fence AS (
					   SELECT ARRAY(SELECT g::text FROM unnest($5::bigint[]) AS g WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = g)) AS unknown
					   FROM products p WHERE p.id = $1 AND p.epoch = $2 FOR SHARE OF p
					 ), granted AS (
					   UPDATE slots s
					   SET status = 'HELD', user_id = g.user_id, held_at = now(),
					       expires_at = now() + make_interval(secs => $3), epoch = $2, seq = g.seq
					   FROM unnest($4::bigint[], $5::bigint[], $6::bigint[]) AS g(slot_id, user_id, seq)
					   WHERE s.id = g.slot_id AND s.product_id = $1 AND s.status = 'AVAILABLE'
					     AND EXISTS (SELECT 1 FROM fence WHERE cardinality(fence.unknown) = 0)
					   RETURNING s.id, s.held_at, s.expires_at
					 ), outboxed AS (
					   INSERT INTO outbox (topic, slot_id) SELECT 'slot.granted', id FROM granted RETURNING 1
					 )
					 SELECT EXISTS (SELECT 1 FROM fence) AS fenced,
					        (SELECT unknown FROM fence) AS unknown,
					        (SELECT json_agg(json_build_array(id::text, held_at, expires_at)) FROM granted) AS granted,
					        (SELECT count(*) FROM outboxed) AS outboxed`,
					[productId, epoch, this.slotTtlSeconds, grants.map(g => g.slotId), grants.map(g => g.userId), grants.map(g => g.seq)]
				);
				if (!r.fenced) {
					await q.rollbackTransaction();
					return { ok: false as const, reason: "FENCED" as const };
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
				return { ok: true as const, granted };
			});
		} catch (err) {
			// The one-active-slot-per-buyer index refused a row: a refusal, not a failure.
			if (isUniqueViolation(err)) return { ok: false, reason: "CONFLICT" };
			throw err;
		}
	}

	async countFree(productId: string): Promise<number> {
		const [row] = await this.ds.query(`SELECT count(*)::int AS n FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'`, [productId]);
		return row.n;
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
