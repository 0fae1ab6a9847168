import { Client } from "pg";
import { hashPassword } from "../../lib/passwords";
import { signAccessToken } from "../../lib/tokens";

/**
 * Buyers in bulk, for the load tool, the benchmark and the tests (test/helpers/sale.ts): rows
 * inserted 10,000 at a time (no sign-up, one password hash for all), and access tokens minted
 * with the store's secret. The load tool's buyers can sign in with `loadtest-password`.
 */
export interface SeededBuyer {
	id: string;
	token: string;
}

export interface SeedOptions {
	/** The stored password hash of every buyer (default: a real hash of `loadtest-password`). */
	passwordHash?: string;
	/** E-mail addresses are `<prefix><n>@<domain>` (default `load.invalid`, which never delivers). */
	emailDomain?: string;
	/** Token lifetime in seconds (default one hour). */
	tokenSeconds?: number;
}

export async function seedBuyers(databaseUrl: string, n: number, prefix: string, jwtSecret: string, o: SeedOptions = {}): Promise<SeededBuyer[]> {
	const hash = o.passwordHash ?? (await hashPassword("loadtest-password"));
	const c = new Client({ connectionString: databaseUrl });
	await c.connect();
	const ids: string[] = [];
	try {
		for (let from = 1; from <= n; from += 10_000) {
			const to = Math.min(n, from + 9_999);
			const { rows } = await c.query(
				`INSERT INTO users (login_id, email, password_hash)
				 SELECT $1::text || g, $1::text || g || '@' || $5::text, $2 FROM generate_series($3::int, $4::int) AS g
				 ORDER BY g RETURNING id`,
				[prefix, hash, from, to, o.emailDomain ?? "load.invalid"]
			);
			for (const r of rows) ids.push(String(r.id));
		}
	} finally {
		await c.end();
	}
	return ids.map(id => ({ id, token: signAccessToken(jwtSecret, { sub: id, role: "buyer" }, o.tokenSeconds ?? 3600) }));
}

/** An admin for creating the run's products through the store's own API. */
export async function seedAdmin(databaseUrl: string, prefix: string, jwtSecret: string): Promise<string> {
	const c = new Client({ connectionString: databaseUrl });
	await c.connect();
	try {
		const { rows } = await c.query(
			`INSERT INTO users (login_id, email, password_hash, role) VALUES ($1::text, $1::text || '@load.invalid', 'none', 'admin') RETURNING id`,
			[`${prefix}admin`]
		);
		return signAccessToken(jwtSecret, { sub: String(rows[0].id), role: "admin" }, 3600);
	} finally {
		await c.end();
	}
}

export interface ProductCounts {
	granted: number;
	distinctBuyers: number;
	stock: number;
}

/** What PostgreSQL says about a product after the run. */
export async function productCounts(databaseUrl: string, productId: string): Promise<ProductCounts> {
	const c = new Client({ connectionString: databaseUrl });
	await c.connect();
	try {
		const { rows } = await c.query(
			`SELECT p.stock,
			        count(s.id) FILTER (WHERE s.status IN ('HELD', 'PAID'))::int AS granted,
			        count(DISTINCT s.user_id) FILTER (WHERE s.status IN ('HELD', 'PAID'))::int AS distinct_buyers
			 FROM products p LEFT JOIN slots s ON s.product_id = p.id WHERE p.id = $1 GROUP BY p.stock`,
			[productId]
		);
		return { granted: rows[0].granted, distinctBuyers: rows[0].distinct_buyers, stock: rows[0].stock };
	} finally {
		await c.end();
	}
}
