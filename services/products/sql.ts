import { rowsOf, type Sql } from "../../lib/sql";

/**
 * The statements that own a product's unit rows (one `slots` row per unit of stock), one function
 * each. `Sql` is any query function: TypeORM's EntityManager/QueryRunner, or a pg client in tests.
 */

/** Units `from`..`to` of a product, AVAILABLE (a new product: 1..stock). */
export async function createUnits(q: Sql, productId: string, to: number, from = 1): Promise<void> {
	await q.query(`INSERT INTO slots (product_id, unit) SELECT $1, u FROM generate_series($3::int, $2::int) AS u`, [productId, to, from]);
}

/** Raises the live units to `stock` by adding `count` AVAILABLE rows on the lowest free unit numbers. */
export async function addUnits(q: Sql, productId: string, stock: number, count: number): Promise<void> {
	await q.query(
		`INSERT INTO slots (product_id, unit)
		 SELECT $1, u FROM generate_series(1, $2::int) AS u
		 WHERE NOT EXISTS (SELECT 1 FROM slots s WHERE s.product_id = $1 AND s.unit = u AND s.status <> 'EXPIRED')
		 ORDER BY u LIMIT $3`,
		[productId, stock, count]
	);
}

/** Removes up to `count` free units, highest first; returns how many went. */
export async function removeFreeUnits(q: Sql, productId: string, count: number): Promise<number> {
	const removed = rowsOf(
		await q.query(
			`DELETE FROM slots WHERE id IN (
				SELECT id FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'
				ORDER BY unit DESC LIMIT $2 FOR UPDATE)
			 RETURNING id`,
			[productId, count]
		)
	);
	return removed.length;
}

/** HELD + PAID units, and free ones. */
export async function unitCounts(q: Sql, productId: string): Promise<{ active: number; free: number; live: number }> {
	const [r] = rowsOf<{ active: string; free: string; live: string }>(
		await q.query(
			`SELECT count(*) FILTER (WHERE status IN ('HELD', 'PAID')) AS active,
			        count(*) FILTER (WHERE status = 'AVAILABLE') AS free,
			        count(*) FILTER (WHERE status <> 'EXPIRED') AS live
			 FROM slots WHERE product_id = $1`,
			[productId]
		)
	);
	return { active: Number(r.active), free: Number(r.free), live: Number(r.live) };
}

/** Whether any unit ever left AVAILABLE (held, paid or expired): the product has orders. */
export async function anyUnitOrdered(q: Sql, productId: string): Promise<boolean> {
	const rows = rowsOf(await q.query(`SELECT 1 FROM slots WHERE product_id = $1 AND status <> 'AVAILABLE' LIMIT 1`, [productId]));
	return rows.length > 0;
}

/** Deletes a product that never had an order: its free units, then the row (RESTRICT keeps any other). */
export async function deleteUnorderedProduct(q: Sql, productId: string): Promise<void> {
	await q.query(`DELETE FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'`, [productId]);
	await q.query(`DELETE FROM products WHERE id = $1`, [productId]);
}

/** Free units per product. */
export async function remainingOf(q: Sql, ids: string[]): Promise<Map<string, number>> {
	const out = new Map<string, number>();
	if (ids.length === 0) return out;
	const rows = rowsOf<{ product_id: string; free: string }>(
		await q.query(
			`SELECT product_id, count(*) AS free FROM slots
			 WHERE product_id = ANY($1::bigint[]) AND status = 'AVAILABLE' GROUP BY product_id`,
			[ids]
		)
	);
	for (const r of rows) out.set(String(r.product_id), Number(r.free));
	return out;
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
