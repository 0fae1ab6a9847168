import { INDEX_PATHS_ONLY, rowsOf, type Sql } from "../../lib/sql";

/**
 * The slots service's statements, one function each. `Sql` is any query function: TypeORM's
 * EntityManager, or a pg client in tests (which call these rather than copy them).
 */

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
