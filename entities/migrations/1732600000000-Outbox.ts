import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * The outbox: what must follow a commit (a "slot granted" message now; jobs later) is written in
 * the same transaction, carried out after the answer, and swept up if a crash left it.
 */
export class Outbox1732600000000 implements MigrationInterface {
	name = "Outbox1732600000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`
			CREATE TABLE outbox (
				id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				topic      varchar(64) NOT NULL,
				slot_id    bigint REFERENCES slots (id) ON DELETE CASCADE,
				payload    jsonb       NOT NULL DEFAULT '{}',
				created_at timestamptz NOT NULL DEFAULT now(),
				done_at    timestamptz
			)`);
		await q.query(`CREATE INDEX outbox_pending ON outbox (created_at) WHERE done_at IS NULL`);
		await q.query(`CREATE INDEX outbox_slot ON outbox (slot_id)`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP TABLE outbox`);
	}
}
