import { MigrationInterface, QueryRunner } from "typeorm";

/** What follows a grant: its jobs (due until scheduled), its one reminder, and its payments. */
export class Lifecycle1732700000000 implements MigrationInterface {
	name = "Lifecycle1732700000000";

	async up(q: QueryRunner): Promise<void> {
		// NULL while a grant's remind/expire jobs are still to be scheduled: the grant's own
		// transaction leaves it NULL (the outbox), the slots service sets it after scheduling.
		await q.query(`ALTER TABLE slots ADD COLUMN jobs_scheduled_at timestamptz, ADD COLUMN reminded_at timestamptz`);
		await q.query(`CREATE INDEX slots_jobs_due ON slots (held_at) WHERE status = 'HELD' AND jobs_scheduled_at IS NULL`);
		await q.query(`
			CREATE TABLE payments (
				id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				slot_id         bigint         NOT NULL REFERENCES slots (id) ON DELETE CASCADE,
				user_id         bigint         NOT NULL REFERENCES users (id),
				method          varchar(16)    NOT NULL,
				amount          numeric(12, 2) NOT NULL CHECK (amount >= 0),
				status          varchar(16)    NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SUCCESS', 'FAILED')),
				failure_reason  varchar(64),
				details         jsonb          NOT NULL DEFAULT '{}',
				idempotency_key varchar(100)   NOT NULL,
				created_at      timestamptz    NOT NULL DEFAULT now(),
				updated_at      timestamptz    NOT NULL DEFAULT now(),
				UNIQUE (user_id, idempotency_key)
			)`);
		// A slot is paid once.
		await q.query(`CREATE UNIQUE INDEX payments_one_success_per_slot ON payments (slot_id) WHERE status = 'SUCCESS'`);
		await q.query(`CREATE INDEX payments_by_user ON payments (user_id, created_at DESC)`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP TABLE payments`);
		await q.query(`DROP INDEX slots_jobs_due`);
		await q.query(`ALTER TABLE slots DROP COLUMN jobs_scheduled_at, DROP COLUMN reminded_at`);
	}
}
