/**
 * The `password_reset_tokens` table's statements (the users service; a new token is inserted
 * through TypeORM's repository, entities/PasswordResetToken.ts).
 */

/** Whether a reset token is live: a wrong one costs no hash (the conditional UPDATE still decides). */
export const liveResetTokenSql = `SELECT 1 FROM password_reset_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > clock_timestamp()`;

/** Consumes a token: one conditional UPDATE, so two resets with one token cannot both win. Returns its user. */
export const useResetTokenSql = `UPDATE password_reset_tokens SET used_at = clock_timestamp()
							 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > clock_timestamp()
							 RETURNING user_id`;

/** Other outstanding reset links for the account die with a reset. */
export const retireResetTokensSql = `UPDATE password_reset_tokens SET used_at = clock_timestamp() WHERE user_id = $1 AND used_at IS NULL`;

/** Expired reset tokens, oldest first, one bounded batch ($1 rows). */
export const pruneResetTokensSql = `
	DELETE FROM password_reset_tokens WHERE id IN (
		SELECT id FROM password_reset_tokens WHERE expires_at < clock_timestamp() ORDER BY expires_at LIMIT $1)`;
