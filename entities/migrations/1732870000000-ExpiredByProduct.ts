import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * A product's expired rows by index. The live rows (AVAILABLE, HELD, PAID) already are, through
 * slots_live_unit; the expired ones were reached only by a seq scan of every slot, which the sale
 * report and the dashboard's counts did for every refresh. Partial: a grant never writes it (a
 * HELD row is outside its predicate), only a reclaim does.
 */
export class ExpiredByProduct1732870000000 implements MigrationInterface {
	name = "ExpiredByProduct1732870000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`CREATE INDEX slots_expired_by_product ON slots (product_id) WHERE status = 'EXPIRED'`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP INDEX slots_expired_by_product`);
	}
}
