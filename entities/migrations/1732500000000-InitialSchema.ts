import { MigrationInterface, QueryRunner } from "typeorm";

/** The schema keeps the sale's promises itself; code checks them too, but cannot bypass these. */
export class InitialSchema1732500000000 implements MigrationInterface {
	name = "InitialSchema1732500000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`
			CREATE TABLE users (
				id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				login_id      varchar(32)  NOT NULL,
				email         varchar(254) NOT NULL,
				password_hash text         NOT NULL,
				role          varchar(16)  NOT NULL DEFAULT 'buyer' CHECK (role IN ('buyer', 'admin')),
				points        integer      NOT NULL DEFAULT 100000 CHECK (points >= 0),
				created_at    timestamptz  NOT NULL DEFAULT now()
			)`);
		await q.query(`CREATE UNIQUE INDEX users_login_id_ci ON users (lower(login_id))`);
		await q.query(`CREATE INDEX users_email_ci ON users (lower(email))`);

		await q.query(`
			CREATE TABLE password_reset_tokens (
				id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
				token_hash char(64)    NOT NULL UNIQUE,
				expires_at timestamptz NOT NULL,
				used_at    timestamptz,
				created_at timestamptz NOT NULL DEFAULT now()
			)`);
		await q.query(`CREATE INDEX password_reset_tokens_user ON password_reset_tokens (user_id)`);

		await q.query(`
			CREATE TABLE products (
				id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				name        varchar(200)   NOT NULL,
				description text           NOT NULL DEFAULT '',
				price       numeric(12, 2) NOT NULL CHECK (price >= 0),
				stock       integer        NOT NULL CHECK (stock >= 0),
				sale_at     timestamptz    NOT NULL,
				epoch       integer        NOT NULL DEFAULT 0,
				created_at  timestamptz    NOT NULL DEFAULT now(),
				updated_at  timestamptz    NOT NULL DEFAULT now()
			)`);

		await q.query(`
			CREATE TABLE slots (
				id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				product_id bigint      NOT NULL REFERENCES products (id) ON DELETE CASCADE,
				unit       integer     NOT NULL CHECK (unit >= 1),
				status     varchar(16) NOT NULL DEFAULT 'AVAILABLE'
				           CHECK (status IN ('AVAILABLE', 'HELD', 'PAID', 'EXPIRED')),
				user_id    bigint REFERENCES users (id) ON DELETE RESTRICT,
				held_at    timestamptz,
				expires_at timestamptz,
				paid_at    timestamptz,
				expired_at timestamptz,
				epoch      integer,
				seq        bigint,
				created_at timestamptz NOT NULL DEFAULT now(),
				-- held by exactly one user once claimed, by nobody while free
				CONSTRAINT slots_holder CHECK ((status = 'AVAILABLE') = (user_id IS NULL)),
				CONSTRAINT slots_held_times CHECK (status = 'AVAILABLE' OR (held_at IS NOT NULL AND expires_at IS NOT NULL))
			)`);
		// One live row per unit of stock: reclaim inserts a fresh AVAILABLE row beside the EXPIRED one.
		await q.query(`CREATE UNIQUE INDEX slots_live_unit ON slots (product_id, unit) WHERE status <> 'EXPIRED'`);
		// One active slot per buyer per product; an expired one does not count.
		await q.query(`CREATE UNIQUE INDEX slots_one_active_per_buyer ON slots (product_id, user_id) WHERE status IN ('HELD', 'PAID')`);
		await q.query(`CREATE INDEX slots_free ON slots (product_id, unit) WHERE status = 'AVAILABLE'`);
		await q.query(`CREATE INDEX slots_by_user ON slots (user_id, created_at DESC) WHERE user_id IS NOT NULL`);
		await q.query(`CREATE INDEX slots_held_expiry ON slots (expires_at) WHERE status = 'HELD'`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP TABLE slots`);
		await q.query(`DROP TABLE products`);
		await q.query(`DROP TABLE password_reset_tokens`);
		await q.query(`DROP TABLE users`);
	}
}
