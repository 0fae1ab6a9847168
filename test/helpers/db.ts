import { randomBytes } from "node:crypto";
import { Client } from "pg";

export const PG_ADMIN_URL = process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** A database name no other test file uses; the database itself is created by the code under test. */
export function freshDatabaseUrl(label = "t"): string {
	const name = `dopamine_test_${label}_${process.pid}_${randomBytes(4).toString("hex")}`;
	const url = new URL(PG_ADMIN_URL);
	url.pathname = `/${name}`;
	return url.toString();
}

export async function dropDatabase(url: string): Promise<void> {
	const name = new URL(url).pathname.slice(1);
	const admin = new Client({ connectionString: PG_ADMIN_URL });
	await admin.connect();
	try {
		await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
	} finally {
		await admin.end();
	}
}

/** A plain pg client on the test's database, for checking what was committed. */
export async function sql<T = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
	const c = new Client({ connectionString: url });
	await c.connect();
	try {
		return (await c.query(text, values)).rows as T[];
	} finally {
		await c.end();
	}
}

export async function databaseExists(url: string): Promise<boolean> {
	const name = new URL(url).pathname.slice(1);
	const rows = await sql(PG_ADMIN_URL, "SELECT 1 FROM pg_database WHERE datname = $1", [name]);
	return rows.length === 1;
}
