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
