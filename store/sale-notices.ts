import type { Sql } from "../lib/sql";

/** The `sale_notices` table: which operators' notices of a sale went out (the sales service). */

export type NoticeKind = "opened" | "sold_out" | "summary";

/** Claims the right to send one notice; true for exactly one caller. */
export async function claimNotice(db: Sql, productId: string, kind: NoticeKind): Promise<boolean> {
	const rows = await db.query(
		`INSERT INTO sale_notices (product_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING product_id`,
		[productId, kind]
	);
	return rows.length === 1;
}

export async function noticeSent(db: Sql, productId: string, kind: NoticeKind): Promise<boolean> {
	const rows = await db.query(`SELECT 1 FROM sale_notices WHERE product_id = $1 AND kind = $2`, [productId, kind]);
	return rows.length === 1;
}
