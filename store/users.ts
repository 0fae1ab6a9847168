import { rowsOf, type Sql } from "../lib/sql";

/**
 * The `users` table's statements, one function or constant each: the users service's (sign-up,
 * login, tokens, roles, the admin bootstrap) and the points a payment spends. The users service
 * also saves and reads its entity through TypeORM's repository (entities/User.ts).
 */

/** Whether a login id is taken, before the sign-up spends a hash (the unique index still decides races). */
export const loginIdTakenSql = `SELECT 1 FROM users WHERE lower(login_id) = lower($1)`;

/** The user a login names, its "tokens not before" and the database's clock, in whole seconds. */
export const userForLoginSql = `
	SELECT id, role, password_hash,
	       extract(epoch FROM tokens_not_before)::bigint AS not_before,
	       floor(extract(epoch FROM clock_timestamp()))::bigint AS now
	FROM users WHERE lower(login_id) = lower($1)`;

/** A reset's new password. */
export const setPasswordHashSql = `UPDATE users SET password_hash = $1 WHERE id = $2`;

/** A login's rehash at today's cost: only if the hash is still the one the login checked (a reset meanwhile wins). */
export const upgradeHashSql = `UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3`;

/** Revokes a user's tokens issued before the next whole second (never moves the time back). */
export const revokeTokensSql = `
	UPDATE users SET tokens_not_before = tokens_not_before_now(tokens_not_before) WHERE id = $1
	RETURNING extract(epoch FROM tokens_not_before)::bigint AS not_before`;

/** A role change; the trigger users_role_revokes_tokens sets tokens_not_before when the role really changes. */
export const setRoleSql = `UPDATE users SET role = $2 WHERE id = $1
						 RETURNING id, login_id, email, role, extract(epoch FROM tokens_not_before)::bigint AS not_before`;

/** A user's "tokens not before", in whole seconds: one primary-key read. */
export const notBeforeSql = `SELECT extract(epoch FROM tokens_not_before)::bigint AS not_before FROM users WHERE id = $1`;

/** Revocations newer than $1 seconds (the tokens' lifetime and a margin): what a gateway loads. */
export const recentRevocationsSql = `SELECT id, extract(epoch FROM tokens_not_before)::bigint AS not_before FROM users
					 WHERE tokens_not_before > clock_timestamp() - make_interval(secs => $1)`;

/** The role of the account a login id names (the admin bootstrap's check). */
export const roleOfLoginIdSql = `SELECT role FROM users WHERE lower(login_id) = lower($1)`;

/** Whether any admin exists. */
export const anyAdminSql = `SELECT 1 FROM users WHERE role = 'admin' LIMIT 1`;

/**
 * An admin, if the login id is free (and, with $4, only if no admin exists at all). One statement,
 * so two nodes starting together create one account. Parameters: $1 login id, $2 e-mail,
 * $3 password hash, $4 only if none.
 */
export const insertAdminSql = `INSERT INTO users (login_id, email, password_hash, role)
					 SELECT $1, $2, $3, 'admin' WHERE NOT $4 OR NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin')
					 ON CONFLICT ((lower(login_id))) DO NOTHING RETURNING login_id`;

// ---- points (the payments service) ----

export async function pointsOf(q: Sql, userId: string): Promise<number> {
	return rowsOf<{ points: number }>(await q.query(`SELECT points FROM users WHERE id = $1`, [userId]))[0]?.points ?? 0;
}

/** Points are whole: a price with cents costs the next whole point. False when the balance is short. */
export async function spendPoints(q: Sql, userId: string, amount: string): Promise<boolean> {
	const spent = rowsOf(
		await q.query(`UPDATE users SET points = points - ceil($2::numeric)::int WHERE id = $1 AND points >= ceil($2::numeric) RETURNING points`, [userId, amount])
	);
	return spent.length === 1;
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
