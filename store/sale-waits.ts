import { rowsOf, type Sql } from "../lib/sql";

/** The `sale_waits` table ("notify me": one row per waiting buyer), one function per statement. */

/** A waiting buyer with what the notice says: who, where to, which product and when it opens. */
export interface WaitRow {
	product_id: string;
	user_id: string;
	sale_at: Date;
	email: string;
	login_id: string;
	name: string;
}

/** Adds the buyer, waiting for the product's current opening; the row when it is new, nothing when it was there. */
export async function join(q: Sql, productId: string, userId: string): Promise<WaitRow | undefined> {
	return rowsOf<WaitRow>(
		await q.query(
			`WITH added AS (
			   INSERT INTO sale_waits (product_id, user_id, sale_at)
			   SELECT p.id, $2, p.sale_at FROM products p WHERE p.id = $1
			   ON CONFLICT DO NOTHING RETURNING product_id, user_id, sale_at)
			 SELECT a.product_id::text, a.user_id::text, a.sale_at, u.email, u.login_id, p.name
			 FROM added a JOIN users u ON u.id = a.user_id JOIN products p ON p.id = a.product_id`,
			[productId, userId]
		)
	)[0];
}

export async function waitOf(q: Sql, productId: string, userId: string): Promise<{ sale_at: Date } | undefined> {
	return rowsOf<{ sale_at: Date }>(await q.query(`SELECT sale_at FROM sale_waits WHERE product_id = $1 AND user_id = $2`, [productId, userId]))[0];
}

export async function leave(q: Sql, productId: string, userId: string): Promise<{ sale_at: Date } | undefined> {
	return rowsOf<{ sale_at: Date }>(await q.query(`DELETE FROM sale_waits WHERE product_id = $1 AND user_id = $2 RETURNING sale_at`, [productId, userId]))[0];
}

/**
 * Moves every wait of a product to its new opening; returns each with the opening it was moved
 * from. The row lock makes one node of several that heard the change move each wait.
 */
export async function move(q: Sql, productId: string, saleAt: Date): Promise<(WaitRow & { old_sale_at: Date })[]> {
	return rowsOf<WaitRow & { old_sale_at: Date }>(
		await q.query(
			`WITH old AS (SELECT product_id, user_id, sale_at FROM sale_waits WHERE product_id = $1 AND sale_at <> $2 FOR UPDATE),
			      moved AS (UPDATE sale_waits w SET sale_at = $2 FROM old WHERE w.product_id = old.product_id AND w.user_id = old.user_id
			                RETURNING w.product_id, w.user_id, w.sale_at, old.sale_at AS old_sale_at)
			 SELECT m.product_id::text, m.user_id::text, m.sale_at, m.old_sale_at, u.email, u.login_id, p.name
			 FROM moved m JOIN users u ON u.id = m.user_id JOIN products p ON p.id = m.product_id`,
			[productId, saleAt]
		)
	);
}

/** A deleted product's waits, gone; returned so their notices are cancelled. */
export async function dropProduct(q: Sql, productId: string): Promise<{ user_id: string; sale_at: Date }[]> {
	return rowsOf(await q.query(`DELETE FROM sale_waits WHERE product_id = $1 RETURNING user_id::text, sale_at`, [productId]));
}

/**
 * The products whose waits no longer match them: rescheduled (a wait's opening is not the
 * product's) or deleted (no product row; `sale_at` null). What a change no waitlist node heard
 * leaves behind. A scan of the waits, which are few beside slots, once a minute.
 */
export async function outOfStep(q: Sql): Promise<{ product_id: string; sale_at: Date | null }[]> {
	return rowsOf(
		await q.query(
			`SELECT DISTINCT w.product_id::text, p.sale_at
			 FROM sale_waits w LEFT JOIN products p ON p.id = w.product_id
			 WHERE p.id IS NULL OR w.sale_at <> p.sale_at`
		)
	);
}

/** How many buyers wait for each product that has any. */
export async function counts(q: Sql): Promise<{ product_id: string; n: number }[]> {
	return rowsOf(await q.query(`SELECT product_id::text, count(*)::int AS n FROM sale_waits GROUP BY product_id`));
}
