import { INDEX_PATHS_ONLY, rowsOf, type Sql } from "../lib/sql";

/**
 * The `slots` table (one row per unit of stock, and every grant's history): every statement that
 * writes it, and the reads mainly about it, one function or constant each. `Sql` is any query
 * function: TypeORM's EntityManager/QueryRunner, or a pg client in tests (which call these rather
 * than copy them). The claim path's statements (the takeover's read, the stock read-in, the batch
 * commit) are here too; services/allocator/pg-store.ts runs them, fenced, after INDEX_PATHS_ONLY.
 * Every decision about time uses the database's clock at the decision (clock_timestamp()).
 */

// ---- laying out units (the products service) ----

/** Units `from`..`to` of a product, AVAILABLE (a new product: 1..stock). */
export async function createUnits(q: Sql, productId: string, to: number, from = 1): Promise<void> {
	await q.query(`INSERT INTO slots (product_id, unit) SELECT $1, u FROM generate_series($3::int, $2::int) AS u`, [productId, to, from]);
}

/** Raises the live units to `stock` by adding `count` AVAILABLE rows on the lowest free unit numbers. */
export async function addUnits(q: Sql, productId: string, stock: number, count: number): Promise<void> {
	await q.query(
		`INSERT INTO slots (product_id, unit)
		 SELECT $1, u FROM generate_series(1, $2::int) AS u
		 WHERE NOT EXISTS (SELECT 1 FROM slots s WHERE s.product_id = $1 AND s.unit = u AND s.status <> 'EXPIRED')
		 ORDER BY u LIMIT $3`,
		[productId, stock, count]
	);
}

/** Removes up to `count` free units, highest first; returns how many went. */
export async function removeFreeUnits(q: Sql, productId: string, count: number): Promise<number> {
	const removed = rowsOf(
		await q.query(
			`DELETE FROM slots WHERE id IN (
				SELECT id FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'
				ORDER BY unit DESC LIMIT $2 FOR UPDATE)
			 RETURNING id`,
			[productId, count]
		)
	);
	return removed.length;
}

/** A product's free units, all of them: the first half of deleting a product that never had an order (store/products.ts deleteProduct is the second). */
export async function deleteFreeUnits(q: Sql, productId: string): Promise<void> {
	await q.query(`DELETE FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'`, [productId]);
}

/** HELD + PAID units, and free ones. */
export async function unitCounts(q: Sql, productId: string): Promise<{ active: number; free: number; live: number }> {
	const [r] = rowsOf<{ active: string; free: string; live: string }>(
		await q.query(
			`SELECT count(*) FILTER (WHERE status IN ('HELD', 'PAID')) AS active,
			        count(*) FILTER (WHERE status = 'AVAILABLE') AS free,
			        count(*) FILTER (WHERE status <> 'EXPIRED') AS live
			 FROM slots WHERE product_id = $1`,
			[productId]
		)
	);
	return { active: Number(r.active), free: Number(r.free), live: Number(r.live) };
}

/** Whether any unit ever left AVAILABLE (held, paid or expired): the product has orders. */
export async function anyUnitOrdered(q: Sql, productId: string): Promise<boolean> {
	const rows = rowsOf(await q.query(`SELECT 1 FROM slots WHERE product_id = $1 AND status <> 'AVAILABLE' LIMIT 1`, [productId]));
	return rows.length > 0;
}

/** Free units per product. */
export async function remainingOf(q: Sql, ids: string[]): Promise<Map<string, number>> {
	const out = new Map<string, number>();
	if (ids.length === 0) return out;
	const rows = rowsOf<{ product_id: string; free: string }>(
		await q.query(
			`SELECT product_id, count(*) AS free FROM slots
			 WHERE product_id = ANY($1::bigint[]) AND status = 'AVAILABLE' GROUP BY product_id`,
			[ids]
		)
	);
	for (const r of rows) out.set(String(r.product_id), Number(r.free));
	return out;
}

/**
 * Free units of a product, by the slots_free index: the allocator's re-check of a sold-out lease
 * and the sale report's count both run this one statement (after INDEX_PATHS_ONLY).
 */
export const freeCountSql = `SELECT count(*)::int AS n FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'`;

// ---- the claim path (run by services/allocator/pg-store.ts) ----

/** A product's live units (free, held, paid), one snapshot: the takeover's read. */
export const liveUnitsSql = `SELECT id, unit, user_id, status, held_at, expires_at, epoch, seq FROM slots
	WHERE product_id = $1 AND status IN ('AVAILABLE', 'HELD', 'PAID')`;

/** A product's free units above a slot id: the ones a stock raise added. */
export const freeUnitsAboveSql = `SELECT id, unit FROM slots WHERE id > $2::bigint AND product_id = $1 AND status = 'AVAILABLE'`;

/**
 * The batch commit, one statement: the fence (a share lock on the product at our epoch, so a
 * takeover waits for this commit and every commit after it finds the epoch moved), the conditional
 * grant of each row, and the outbox rows of the "slot granted" messages, sent after the answer.
 * It writes `outbox` too, in the same CTE, and lives here, with the table it is about (the grants).
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

// ---- expiry and reclaim, reminders, jobs (the slots service) ----

export interface Reclaimed {
	id: string;
	product_id: string;
	unit: number;
	user_id: string;
}

/** The expiry's UPDATE: overdue HELD slots by slots_held_expiry, or one slot by its id. */
export function expireSql(one: boolean, evenIfNotDue: boolean): string {
	const due = evenIfNotDue ? "" : "AND expires_at <= clock_timestamp()";
	return `UPDATE slots SET status = 'EXPIRED', expired_at = clock_timestamp(), expires_at = least(expires_at, clock_timestamp())
	 WHERE id IN (
	   SELECT id FROM slots WHERE status = 'HELD' ${one ? "AND id = $1" : ""} ${due}
	   ORDER BY expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
	   AND status = 'HELD' ${due}
	 RETURNING id, product_id, unit, user_id`;
}

/**
 * Expires HELD slots and gives each unit a fresh AVAILABLE row, keeping the expired row in its
 * buyer's history: overdue ones (the sweep, up to 1,000), one slot if it is overdue (its job), or
 * one slot now, overdue or not (an operator's order). "Overdue" is judged by the database's clock
 * at the decision (clock_timestamp()). SKIP LOCKED: nodes sweeping at once share the work; the
 * status and time are checked again by the UPDATE itself, so a payment that got there first wins.
 * Run it inside a transaction: the two statements keep AVAILABLE + HELD + PAID = stock together.
 */
export async function expireAndReclaim(q: Sql, one?: { slotId: string; evenIfNotDue: boolean }): Promise<Reclaimed[]> {
	await q.query(INDEX_PATHS_ONLY);
	const rows = rowsOf<Reclaimed>(await q.query(expireSql(!!one, !!one?.evenIfNotDue), one ? [one.slotId] : []));
	if (rows.length > 0)
		await q.query(`INSERT INTO slots (product_id, unit) SELECT * FROM unnest($1::bigint[], $2::int[])`, [
			rows.map(r => r.product_id),
			rows.map(r => r.unit),
		]);
	return rows;
}

/** Who to tell that their slot expired, and of which product (after a reclaim). */
export const reclaimedFactsSql = `SELECT s.id, u.email, u.login_id, s.product_id, p.name
				 FROM slots s JOIN users u ON u.id = s.user_id JOIN products p ON p.id = s.product_id WHERE s.id = ANY($1::bigint[])`;

/**
 * Marks a slot reminded, once, only while it is HELD, unexpired and inside its reminder window by
 * the database's clock ($2: seconds before expiry; a second of slack covers a job firing on the
 * dot); returns what the reminder says. Parameters: $1 slot id, $2 seconds.
 */
export const markRemindedSql = `UPDATE slots s SET reminded_at = clock_timestamp()
				 FROM users u, products p
				 WHERE s.id = $1 AND s.status = 'HELD' AND s.expires_at > clock_timestamp() AND s.reminded_at IS NULL
				   AND s.expires_at - make_interval(secs => $2) <= clock_timestamp() + interval '1 second'
				   AND u.id = s.user_id AND p.id = s.product_id
				 RETURNING u.email, u.login_id, p.name, s.expires_at, s.product_id`;

/** Grants whose jobs are not scheduled yet, 500 at a time (SKIP LOCKED: `slots` nodes share the work); job by job (MongoDB). */
export const dueForJobsSql = `SELECT id, expires_at FROM slots WHERE status = 'HELD' AND jobs_scheduled_at IS NULL
						 ORDER BY held_at LIMIT 500 FOR UPDATE SKIP LOCKED`;

/** These grants' jobs are scheduled (after Agenda's API saved them, job by job). */
export const markJobsScheduledSql = `UPDATE slots SET jobs_scheduled_at = now() WHERE id = ANY($1::bigint[])`;

// ---- payment (the payments service) ----

/** The buyer's slot with its price, and whether it is past its expiry now. */
export async function slotToPay(q: Sql, slotId: string, userId: string) {
	return rowsOf<{ id: string; status: string; past: boolean; price: string }>(
		await q.query(
			`SELECT s.id, s.status, s.expires_at <= clock_timestamp() AS past, p.price FROM slots s JOIN products p ON p.id = s.product_id
			 WHERE s.id = $1 AND s.user_id = $2`,
			[slotId, userId]
		)
	)[0];
}

/** Locks a slot's row until the transaction ends: what an initiate counts, or a confirm judges, waits behind a competing one. */
export async function lockSlot(q: Sql, slotId: string): Promise<void> {
	await q.query(`SELECT 1 FROM slots WHERE id = $1 FOR UPDATE`, [slotId]);
}

/**
 * HELD and unexpired now -> PAID; the expiry's UPDATE is the mirror image, so one of them wins.
 * The row is locked first, and only then judged: an UPDATE that waits on a row lock decides on
 * what it read before waiting (PostgreSQL re-checks its WHERE only when the holder changed the
 * row), so a confirm that waited past the expiry would pay. Run it inside a transaction.
 */
export async function paySlot(q: Sql, slotId: string): Promise<{ id: string; product_id: string } | undefined> {
	await lockSlot(q, slotId);
	return rowsOf<{ id: string; product_id: string }>(
		await q.query(
			`UPDATE slots SET status = 'PAID', paid_at = clock_timestamp() WHERE id = $1 AND status = 'HELD' AND expires_at > clock_timestamp() RETURNING id, product_id`,
			[slotId]
		)
	)[0];
}

/** Undoes paySlot inside the same transaction (the points ran out meanwhile). */
export async function unpaySlot(q: Sql, slotId: string): Promise<void> {
	await q.query(`UPDATE slots SET status = 'HELD', paid_at = NULL WHERE id = $1`, [slotId]);
}

export async function slotStatusOf(q: Sql, slotId: string): Promise<string | undefined> {
	return rowsOf<{ status: string }>(await q.query(`SELECT status FROM slots WHERE id = $1`, [slotId]))[0]?.status;
}

// ---- the sale report (the sales service) ----

/**
 * Every slot row that was ever granted (HELD, PAID, EXPIRED), in (epoch, seq) order. The live ones
 * by slots_one_active_per_buyer, the expired ones by slots_expired_by_product: never a scan of
 * every product's slots (test/integration/plans.test.ts).
 */
export const grantRowsSql = `SELECT s.id, s.unit, s.status, s.user_id, u.login_id, s.epoch, s.seq, s.held_at, s.paid_at, s.expired_at,
	        (SELECT p.status FROM payments p WHERE p.slot_id = s.id
	         ORDER BY (p.status = 'SUCCESS') DESC, p.id DESC LIMIT 1) AS payment
	 FROM (SELECT * FROM slots WHERE product_id = $1 AND status IN ('HELD', 'PAID')
	       UNION ALL
	       SELECT * FROM slots WHERE product_id = $1 AND status = 'EXPIRED') s
	 LEFT JOIN users u ON u.id = s.user_id
	 ORDER BY s.epoch NULLS LAST, s.seq NULLS LAST, s.id`;
