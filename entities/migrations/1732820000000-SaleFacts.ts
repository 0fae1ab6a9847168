import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * What the sale report needs and the slot rows do not keep, recorded by the allocator off the
 * claim path (services/allocator/claim-stats.ts), so a report is rebuilt from PostgreSQL after
 * any restart:
 * - claim_stats: claims answered per product, per second, per outcome (the chart);
 * - claim_epochs: per product, epoch and outcome, how many and the lowest and highest seq and the
 *   first and last answer time (the order check: no SOLD_OUT below a GRANTED seq in one epoch);
 * - sale_notices: which operators' messages ("opened", "sold out", "summary") went out, so that
 *   with several `sales` nodes each goes out once.
 * No foreign keys: the recorder drops rows of unknown products itself, and facts about a sale
 * stay readable even if its product is gone.
 */
export class SaleFacts1732820000000 implements MigrationInterface {
	name = "SaleFacts1732820000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`
			CREATE TABLE claim_stats (
				product_id bigint       NOT NULL,
				second     timestamptz  NOT NULL,
				outcome    varchar(24)  NOT NULL,
				n          integer      NOT NULL CHECK (n >= 0),
				PRIMARY KEY (product_id, second, outcome)
			)`);
		await q.query(`
			CREATE TABLE claim_epochs (
				product_id bigint       NOT NULL,
				epoch      integer      NOT NULL,
				outcome    varchar(24)  NOT NULL,
				n          integer      NOT NULL CHECK (n >= 0),
				min_seq    bigint       NOT NULL,
				max_seq    bigint       NOT NULL,
				first_at   timestamptz  NOT NULL,
				last_at    timestamptz  NOT NULL,
				PRIMARY KEY (product_id, epoch, outcome)
			)`);
		await q.query(`
			CREATE TABLE sale_notices (
				product_id bigint       NOT NULL,
				kind       varchar(16)  NOT NULL,
				sent_at    timestamptz  NOT NULL DEFAULT now(),
				PRIMARY KEY (product_id, kind)
			)`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP TABLE sale_notices`);
		await q.query(`DROP TABLE claim_epochs`);
		await q.query(`DROP TABLE claim_stats`);
	}
}
