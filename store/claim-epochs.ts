import type { Sql } from "../lib/sql";

/** The `claim_epochs` table: the allocator's claims per product, epoch and outcome (the sale report's order check). */

/**
 * Adds per-epoch facts ($1-$8: products, epochs, outcomes, counts, lowest and highest seq, first
 * and last answer time in seconds): counts add up, seq and time ranges widen. Run by
 * services/allocator/claim-stats.ts about once a second.
 */
export const addEpochsSql = `
	INSERT INTO claim_epochs (product_id, epoch, outcome, n, min_seq, max_seq, first_at, last_at)
	SELECT t.p, t.e, t.o, t.n, t.lo, t.hi, to_timestamp(t.fa), to_timestamp(t.la)
	FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::float8[], $8::float8[])
	     AS t(p, e, o, n, lo, hi, fa, la)
	WHERE EXISTS (SELECT 1 FROM products WHERE id = t.p)
	ON CONFLICT (product_id, epoch, outcome) DO UPDATE SET
		n = claim_epochs.n + excluded.n,
		min_seq = least(claim_epochs.min_seq, excluded.min_seq),
		max_seq = greatest(claim_epochs.max_seq, excluded.max_seq),
		first_at = least(claim_epochs.first_at, excluded.first_at),
		last_at = greatest(claim_epochs.last_at, excluded.last_at)`;

/** A product's facts per epoch and outcome, as stored. */
export function epochRows(db: Sql, productId: string): Promise<{ epoch: number; outcome: string; n: number; min_seq: string; max_seq: string; first_at: Date; last_at: Date }[]> {
	return db.query(`SELECT epoch, outcome, n, min_seq, max_seq, first_at, last_at FROM claim_epochs WHERE product_id = $1 ORDER BY epoch, outcome`, [productId]);
}
