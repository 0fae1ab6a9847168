/** Any query function: TypeORM's EntityManager/QueryRunner/DataSource, or a pg client in tests. */
export type Sql = { query(text: string, params?: unknown[]): Promise<any> };

/**
 * TypeORM's `query()` on PostgreSQL returns the rows for SELECT and INSERT, but
 * `[rows, affectedCount]` for UPDATE and DELETE. This reads either as the rows.
 */
export function rowsOf<T>(result: unknown): T[] {
	if (Array.isArray(result) && result.length === 2 && Array.isArray(result[0]) && typeof result[1] === "number")
		return result[0] as T[];
	return result as T[];
}

/** Ids are bigint identities, passed around as strings; anything else names no row. */
export function isId(value: unknown): value is string {
	return typeof value === "string" && /^[1-9][0-9]{0,17}$/.test(value);
}

/**
 * Planner settings for the sale's hot statements, sent first inside their transaction (SET LOCAL
 * ends with it, so a pooled connection, PgBouncer's included, carries nothing over). Every one of
 * those statements reaches its rows through an index by key (a slot id, a product, a buyer), so
 * an index path is right whatever the table's size; but the planner chooses by statistics, and
 * statistics lag: a slots table analyzed when it held one small product, then given a
 * 40,000-unit one, made the batch commit a nested loop over a seq scan of every slot (957 ms at
 * 150 grants), and the unknown-buyer check a hash of the whole users table. With these off, a
 * seq scan or a hash or merge join is chosen only where no index path exists at all, so the plan
 * cannot flip with batch size, stock, user count or the age of the statistics
 * (test/integration/plans.test.ts pins it at production sizes).
 */
export const INDEX_PATHS_ONLY = "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

/** One read under INDEX_PATHS_ONLY (its own short transaction): for the reports' reads of a product's rows. */
export function queryIndexed<T>(db: { transaction<R>(work: (em: { query(text: string, params?: unknown[]): Promise<any> }) => Promise<R>): Promise<R> }, text: string, params: unknown[] = []): Promise<T[]> {
	return db.transaction(async em => {
		await em.query(INDEX_PATHS_ONLY);
		return em.query(text, params);
	});
}
