import { rowsOf, type Sql } from "../lib/sql";

/**
 * The `products` table's statements, one function or constant each (the products service also
 * saves its entity through TypeORM's repository: entities/Product.ts). `Sql` is any query
 * function: TypeORM's EntityManager/QueryRunner/DataSource, or a pg client in tests.
 */

/** Deletes a product that never had an order, after its free units (store/slots.ts deleteFreeUnits); RESTRICT keeps any other. */
export async function deleteProduct(q: Sql, productId: string): Promise<void> {
	await q.query(`DELETE FROM products WHERE id = $1`, [productId]);
}

/** Products whose stock is still being laid out towards its target. */
export async function productsBelowTarget(q: Sql): Promise<string[]> {
	const rows = rowsOf<{ id: string }>(await q.query(`SELECT id FROM products WHERE stock_target IS NOT NULL ORDER BY id`));
	return rows.map(r => String(r.id));
}

/** Every product's opening time (the gateways' schedule). */
export async function schedule(q: Sql): Promise<{ id: string; sale_at: Date }[]> {
	return rowsOf(await q.query(`SELECT id, sale_at FROM products`));
}

/** Whether a product exists: one indexed read, cached by the caller, before an actor is spent on an id. */
export async function productExists(q: Sql, productId: string): Promise<boolean> {
	const rows = await q.query(`SELECT 1 FROM products WHERE id = $1`, [productId]);
	return rows.length === 1;
}

// ---- the epoch, the allocator's fence (run by services/allocator/pg-store.ts) ----

/** The takeover's epoch bump, whoever owned the product before: waits for a commit or a stock change in flight. */
export const takeOverEpochSql = `UPDATE products SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch, stock, sale_at`;

/** The owner's next epoch, only from its own: nothing when another node took the product over. */
export const ownEpochBumpSql = `UPDATE products SET epoch = epoch + 1 WHERE id = $1 AND epoch = $2 RETURNING epoch, stock, sale_at`;

// ---- reads about products (the waitlist, the sales service) ----

/** A product's opening, and whether it has opened (the waitlist). */
export async function openingOf(q: Sql, id: string): Promise<{ id: string; sale_at: Date; open: boolean } | undefined> {
	return rowsOf<{ id: string; sale_at: Date; open: boolean }>(
		await q.query(`SELECT id::text, sale_at, sale_at <= now() AS open FROM products WHERE id = $1`, [id])
	)[0];
}

/** The product a sale report is about. */
export async function productRow(q: Sql, productId: string) {
	const rows: { id: string; name: string; stock: number; sale_at: Date; epoch: number }[] = await q.query(
		`SELECT id, name, stock, sale_at, epoch FROM products WHERE id = $1`,
		[productId]
	);
	return rows[0] ?? null;
}

/**
 * Products on today's sales (opening within a day either side of now), with their row counts: the
 * live rows by slots_live_unit, the expired ones by slots_expired_by_product, per product (never a
 * scan of every product's slots: test/integration/plans.test.ts). The dashboard's; run after
 * INDEX_PATHS_ONLY.
 */
export const saleCountsSql = `SELECT p.id, p.name, p.stock, p.sale_at, p.epoch, live.available, live.held, live.paid,
	        (SELECT count(*)::int FROM slots e WHERE e.product_id = p.id AND e.status = 'EXPIRED') AS expired
	 FROM products p CROSS JOIN LATERAL (
	   SELECT count(*) FILTER (WHERE s.status = 'AVAILABLE')::int AS available,
	          count(*) FILTER (WHERE s.status = 'HELD')::int AS held,
	          count(*) FILTER (WHERE s.status = 'PAID')::int AS paid
	   FROM slots s WHERE s.product_id = p.id AND s.status <> 'EXPIRED') live
	 WHERE p.sale_at BETWEEN now() - interval '1 day' AND now() + interval '1 day'
	 ORDER BY p.sale_at, p.id LIMIT 100`;
