import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Access tokens can be revoked: `users.tokens_not_before` (whole seconds, compared with a token's
 * `iat`). A password reset sets it; a role change sets it by trigger, so a change made by any path
 * (the admin bootstrap, an operator's SQL) revokes the tokens that carry the old role. Expired
 * reset tokens are pruned by expiry.
 */
export class TokenRevocation1732830000000 implements MigrationInterface {
	name = "TokenRevocation1732830000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`ALTER TABLE users ADD COLUMN tokens_not_before timestamptz`);
		await q.query(`CREATE INDEX users_tokens_not_before ON users (tokens_not_before) WHERE tokens_not_before IS NOT NULL`);
		// The next whole second: a token issued earlier in this second (iat = this second) is
		// revoked, and one issued after is given iat = that second by the login (see lib/tokens.ts).
		// A second revocation within that second goes one further, past the tokens issued between
		// the two (whose iat is the first one's time).
		await q.query(`
			CREATE FUNCTION tokens_not_before_now(previous timestamptz) RETURNS timestamptz LANGUAGE sql VOLATILE AS
			$$ SELECT greatest(previous + interval '1 second', date_trunc('second', clock_timestamp()) + interval '1 second') $$`);
		await q.query(`
			CREATE FUNCTION users_role_revokes_tokens() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN NEW.tokens_not_before := tokens_not_before_now(OLD.tokens_not_before); RETURN NEW; END $$`);
		await q.query(`
			CREATE TRIGGER users_role_revokes_tokens BEFORE UPDATE OF role ON users
			FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role) EXECUTE FUNCTION users_role_revokes_tokens()`);
		await q.query(`CREATE INDEX password_reset_tokens_expiry ON password_reset_tokens (expires_at)`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP INDEX password_reset_tokens_expiry`);
		await q.query(`DROP TRIGGER users_role_revokes_tokens ON users`);
		await q.query(`DROP FUNCTION users_role_revokes_tokens()`);
		await q.query(`DROP FUNCTION tokens_not_before_now(timestamptz)`);
		await q.query(`DROP INDEX users_tokens_not_before`);
		await q.query(`ALTER TABLE users DROP COLUMN tokens_not_before`);
	}
}
