import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * The notifier's delivery log: a row per delivery (a message on one channel). It is the
 * notifier's state, not only its history: intake writes a row (dedupe by the message's key and
 * channel), workers take due rows under a lease, retries wait in `next_attempt_at`, and the local
 * mailbox (no SMTP_URL) is the e-mail rows themselves.
 */
export class Deliveries1732800000000 implements MigrationInterface {
	name = "Deliveries1732800000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`
			CREATE TABLE deliveries (
				id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				dedupe_key      varchar(200) NOT NULL,
				kind            varchar(64)  NOT NULL,
				channel         varchar(16)  NOT NULL,
				recipient       varchar(320) NOT NULL DEFAULT '',
				subject         text         NOT NULL DEFAULT '',
				text            text         NOT NULL DEFAULT '',
				status          varchar(10)  NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENT', 'FAILED', 'CANCELLED')),
				attempts        int          NOT NULL DEFAULT 0,
				next_attempt_at timestamptz,
				last_error      text,
				send_at         timestamptz,
				lease_until     timestamptz,
				worker          varchar(128),
				created_at      timestamptz  NOT NULL DEFAULT now(),
				updated_at      timestamptz  NOT NULL DEFAULT now(),
				sent_at         timestamptz,
				UNIQUE (dedupe_key, channel)
			)`);
		// Due work: PENDING rows by when they are due (a scheduled row waits with next_attempt_at NULL).
		await q.query(`CREATE INDEX deliveries_due ON deliveries (coalesce(next_attempt_at, send_at)) WHERE status = 'PENDING'`);
		await q.query(`CREATE INDEX deliveries_newest ON deliveries (created_at DESC, id DESC)`);
		await q.query(`CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE status <> 'PENDING'`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP TABLE deliveries`);
	}
}
