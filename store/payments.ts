import { rowsOf, type Sql } from "../lib/sql";

/**
 * The `payments` table's statements, one function each (the slot a payment pays is written in
 * store/slots.ts, the points it spends in store/users.ts). `Sql` is any query function: TypeORM's
 * EntityManager, or a pg client in tests.
 */

export interface PaymentRow {
	id: string;
	slot_id: string;
	user_id: string;
	method: string;
	amount: string;
	status: "PENDING" | "SUCCESS" | "FAILED";
	failure_reason: string | null;
	details: Record<string, unknown>;
	idempotency_key: string;
	request_hash: string | null;
}

export async function paymentByKey(q: Sql, userId: string, key: string): Promise<PaymentRow | undefined> {
	return rowsOf<PaymentRow>(await q.query(`SELECT * FROM payments WHERE user_id = $1 AND idempotency_key = $2`, [userId, key]))[0];
}

/**
 * PENDING payments of a slot. Counted with the slot row locked (store/slots.ts lockSlot, first, in
 * the same transaction): two initiates for one slot count one after the other, so the bound holds
 * under a race.
 */
export async function pendingOfSlot(q: Sql, slotId: string): Promise<number> {
	return rowsOf<{ n: number }>(await q.query(`SELECT count(*)::int AS n FROM payments WHERE slot_id = $1 AND status = 'PENDING'`, [slotId]))[0].n;
}

/** A PENDING payment, or undefined when the buyer's Idempotency-Key is already taken. */
export async function insertPayment(
	q: Sql,
	p: { slotId: string; userId: string; method: string; amount: string; details: Record<string, unknown>; key: string; requestHash: string }
): Promise<PaymentRow | undefined> {
	return rowsOf<PaymentRow>(
		await q.query(
			`INSERT INTO payments (slot_id, user_id, method, amount, details, idempotency_key, request_hash)
			 VALUES ($1, $2, $3, $4, $5, $6, $7)
			 ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING *`,
			[p.slotId, p.userId, p.method, p.amount, JSON.stringify(p.details), p.key, p.requestHash]
		)
	)[0];
}

export async function paymentOf(q: Sql, id: string, userId: string, lock = false): Promise<PaymentRow | undefined> {
	return rowsOf<PaymentRow>(await q.query(`SELECT * FROM payments WHERE id = $1 AND user_id = $2 ${lock ? "FOR UPDATE" : ""}`, [id, userId]))[0];
}

export async function paymentsOf(q: Sql, userId: string): Promise<PaymentRow[]> {
	return rowsOf<PaymentRow>(await q.query(`SELECT * FROM payments WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 500`, [userId]));
}

export async function markSucceeded(q: Sql, id: string): Promise<PaymentRow> {
	return rowsOf<PaymentRow>(await q.query(`UPDATE payments SET status = 'SUCCESS', updated_at = now() WHERE id = $1 RETURNING *`, [id]))[0];
}

export async function markFailed(q: Sql, id: string, reason: string): Promise<PaymentRow> {
	return rowsOf<PaymentRow>(
		await q.query(`UPDATE payments SET status = 'FAILED', failure_reason = $2, updated_at = now() WHERE id = $1 RETURNING *`, [id, reason])
	)[0];
}
