import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Orders are never deleted by a cascade: a product's slots and a slot's payments outlive an admin's
 * delete (the delete is refused instead). A payment keeps a hash of the request that made it, so a
 * replay of its Idempotency-Key with another body is told apart. A product created with a large
 * stock gets its units in steps towards `stock_target`.
 */
export class Integrity1732840000000 implements MigrationInterface {
	name = "Integrity1732840000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`ALTER TABLE slots DROP CONSTRAINT slots_product_id_fkey,
			ADD CONSTRAINT slots_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE RESTRICT`);
		await q.query(`ALTER TABLE payments DROP CONSTRAINT payments_slot_id_fkey,
			ADD CONSTRAINT payments_slot_id_fkey FOREIGN KEY (slot_id) REFERENCES slots (id) ON DELETE RESTRICT`);
		await q.query(`ALTER TABLE payments ADD COLUMN request_hash char(64)`);
		// Card numbers were kept whole before: keep the brand and the last four only.
		await q.query(`UPDATE payments SET details = jsonb_build_object('brand', 'card', 'last4', right(details->>'cardNumber', 4))
			WHERE details ? 'cardNumber'`);
		await q.query(`ALTER TABLE products ADD COLUMN stock_target integer CHECK (stock_target >= 0)`);
		await q.query(`CREATE INDEX outbox_sent ON outbox (done_at) WHERE done_at IS NOT NULL`);
	}

	async down(q: QueryRunner): Promise<void> {
		await q.query(`DROP INDEX outbox_sent`);
		await q.query(`ALTER TABLE products DROP COLUMN stock_target`);
		await q.query(`ALTER TABLE payments DROP COLUMN request_hash`);
		await q.query(`ALTER TABLE payments DROP CONSTRAINT payments_slot_id_fkey,
			ADD CONSTRAINT payments_slot_id_fkey FOREIGN KEY (slot_id) REFERENCES slots (id) ON DELETE CASCADE`);
		await q.query(`ALTER TABLE slots DROP CONSTRAINT slots_product_id_fkey,
			ADD CONSTRAINT slots_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE CASCADE`);
	}
}
