import { rowsOf, type Sql } from "../../lib/sql";

/**
 * The payments service's statements, one function each. `Sql` is any query function: TypeORM's
 * EntityManager, or a pg client in tests. Every decision about time uses the database's clock at
 * the decision (clock_timestamp()), never the transaction's start.
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

/**
 * PENDING payments of a slot, counted with the slot row locked: two initiates for one slot count
 * one after the other, so the bound holds under a race. Run it inside a transaction.
 */
export async function pendingOfSlot(q: Sql, slotId: string): Promise<number> {
	await q.query(`SELECT 1 FROM slots WHERE id = $1 FOR UPDATE`, [slotId]);
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

export async function pointsOf(q: Sql, userId: string): Promise<number> {
	return rowsOf<{ points: number }>(await q.query(`SELECT points FROM users WHERE id = $1`, [userId]))[0]?.points ?? 0;
}

/**
 * HELD and unexpired now -> PAID; the expiry's UPDATE is the mirror image, so one of them wins.
 * The row is locked first, and only then judged: an UPDATE that waits on a row lock decides on
 * what it read before waiting (PostgreSQL re-checks its WHERE only when the holder changed the
 * row), so a confirm that waited past the expiry would pay. Run it inside a transaction.
 */
export async function paySlot(q: Sql, slotId: string): Promise<{ id: string; product_id: string } | undefined> {
	await q.query(`SELECT 1 FROM slots WHERE id = $1 FOR UPDATE`, [slotId]);
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

/** Points are whole: a price with cents costs the next whole point. False when the balance is short. */
export async function spendPoints(q: Sql, userId: string, amount: string): Promise<boolean> {
	const spent = rowsOf(
		await q.query(`UPDATE users SET points = points - ceil($2::numeric)::int WHERE id = $1 AND points >= ceil($2::numeric) RETURNING points`, [userId, amount])
	);
	return spent.length === 1;
}

export async function markSucceeded(q: Sql, id: string): Promise<PaymentRow> {
	return rowsOf<PaymentRow>(await q.query(`UPDATE payments SET status = 'SUCCESS', updated_at = now() WHERE id = $1 RETURNING *`, [id]))[0];
}

export async function markFailed(q: Sql, id: string, reason: string): Promise<PaymentRow> {
	return rowsOf<PaymentRow>(
		await q.query(`UPDATE payments SET status = 'FAILED', failure_reason = $2, updated_at = now() WHERE id = $1 RETURNING *`, [id, reason])
	)[0];
}

/** Who to tell about a payment, and of what. */
export async function receiptFacts(q: Sql, userId: string, slotId: string) {
	return rowsOf<{ email: string; login_id: string; name: string; product_id: string }>(
		await q.query(
			`SELECT u.email, u.login_id, pr.name, pr.id AS product_id FROM users u JOIN slots s ON s.id = $2 JOIN products pr ON pr.id = s.product_id WHERE u.id = $1`,
			[userId, slotId]
		)
	)[0];
}
