import type { Sql } from "../lib/sql";

/** The `claim_stats` table: the allocator's claims per product, second and outcome (the sale report's facts). */

/**
 * Adds per-second counts ($1-$4: products, seconds, outcomes, counts); rows of products that do
 * not exist are dropped here. Run by services/allocator/claim-stats.ts about once a second.
 */
export const addSecondsSql = `
	INSERT INTO claim_stats (product_id, second, outcome, n)
	SELECT t.p, to_timestamp(t.s), t.o, t.n
	FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[]) AS t(p, s, o, n)
	WHERE EXISTS (SELECT 1 FROM products WHERE id = t.p)
	ON CONFLICT (product_id, second, outcome) DO UPDATE SET n = claim_stats.n + excluded.n`;

/** A product's claims per second and outcome (the sale report's series). */
export function claimSeries(db: Sql, productId: string): Promise<{ second: Date; outcome: string; n: number }[]> {
	return db.query(`SELECT second, outcome, n FROM claim_stats WHERE product_id = $1 ORDER BY second, outcome`, [productId]);
}

/** Per product and outcome, the claims of the last two complete seconds the recorder has written (the dashboard's rates). */
export function recentClaims(db: Sql): Promise<{ product_id: string; outcome: string; n: number }[]> {
	return db.query(
		`SELECT product_id, outcome, sum(n)::int AS n FROM claim_stats
		 WHERE second >= date_trunc('second', now()) - interval '3 seconds' AND second < date_trunc('second', now()) - interval '1 second'
		 GROUP BY product_id, outcome`
	);
}
