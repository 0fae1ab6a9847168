import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * "Notify me": a buyer waiting for a product's sale to open. `sale_at` is the opening the buyer's
 * notice is scheduled for (its dedupeKey carries it), so a reschedule knows which notice to cancel.
 * No foreign key to products: a deleted product's waits are read to cancel their notices.
 */
export class SaleWaits1732880000000 implements MigrationInterface {
	name = "SaleWaits1732880000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`
			CREATE TABLE sale_waits (
				product_id bigint      NOT NULL,
				user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
				sale_at    timestamptz NOT NULL,
				created_at timestamptz NOT NULL DEFAULT now(),
				PRIMARY KEY (product_id, user_id)
			)`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP TABLE sale_waits`);
	}
}
