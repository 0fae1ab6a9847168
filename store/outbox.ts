/**
 * The `outbox` table: the "slot granted" messages recorded with their grants (the batch commit,
 * store/slots.ts grantBatchSql, inserts them in its own statement) and sent after the answer by
 * the allocator service.
 */

/**
 * The "slot granted" messages to send: those of the given slots ($1 ids) right after their commit,
 * or (the sweep) any left pending longer than $1 seconds by a crash. Locked while sent (SKIP
 * LOCKED: two nodes never send the same one). Run after INDEX_PATHS_ONLY.
 */
const pendingOutbox = (where: string) => `SELECT o.id, o.slot_id, u.email, u.login_id, p.name, s.expires_at, p.id AS product_id
	 FROM outbox o JOIN slots s ON s.id = o.slot_id JOIN users u ON u.id = s.user_id JOIN products p ON p.id = s.product_id
	 WHERE o.done_at IS NULL AND o.topic = 'slot.granted' AND ${where}
	 ORDER BY o.id LIMIT 1000
	 FOR UPDATE OF o SKIP LOCKED`;
export const outboxOfSlotsSql = pendingOutbox("o.slot_id = ANY($1::bigint[])");
export const outboxLeftPendingSql = pendingOutbox("o.created_at < now() - make_interval(secs => $1)");

/** These messages were accepted by the notifier's channel ($1 ids). */
export const markOutboxSentSql = `UPDATE outbox SET done_at = now() WHERE id = ANY($1::bigint[])`;

/** One batch of outbox rows sent more than $1 seconds ago, at most $2 of them (short locks, short transactions). */
export const pruneSentOutboxSql = `DELETE FROM outbox WHERE id IN (
			   SELECT id FROM outbox WHERE done_at IS NOT NULL AND done_at < now() - make_interval(secs => $1)
			   ORDER BY done_at LIMIT $2 FOR UPDATE SKIP LOCKED)
			 RETURNING 1`;
