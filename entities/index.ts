import "reflect-metadata";
import { Client } from "pg";
import { DataSource } from "typeorm";
import { PasswordResetToken } from "./PasswordResetToken";
import { Product } from "./Product";
import { Slot } from "./Slot";
import { User } from "./User";
import { InitialSchema1732500000000 } from "./migrations/1732500000000-InitialSchema";
import { Outbox1732600000000 } from "./migrations/1732600000000-Outbox";
import { Lifecycle1732700000000 } from "./migrations/1732700000000-Lifecycle";
import { Deliveries1732800000000 } from "./migrations/1732800000000-Deliveries";
import { SaleFacts1732820000000 } from "./migrations/1732820000000-SaleFacts";
import { TokenRevocation1732830000000 } from "./migrations/1732830000000-TokenRevocation";
import { Integrity1732840000000 } from "./migrations/1732840000000-Integrity";
import { DeliveriesDueOrder1732850000000 } from "./migrations/1732850000000-DeliveriesDueOrder";
import { KeyedRequestHash1732860000000 } from "./migrations/1732860000000-KeyedRequestHash";
import { ExpiredByProduct1732870000000 } from "./migrations/1732870000000-ExpiredByProduct";
import { SaleWaits1732880000000 } from "./migrations/1732880000000-SaleWaits";

export { PasswordResetToken, Product, Slot, User };
export const entities = [User, PasswordResetToken, Product, Slot];
export const migrations = [InitialSchema1732500000000, Outbox1732600000000, Lifecycle1732700000000, Deliveries1732800000000, SaleFacts1732820000000, TokenRevocation1732830000000, Integrity1732840000000, DeliveriesDueOrder1732850000000, KeyedRequestHash1732860000000, ExpiredByProduct1732870000000, SaleWaits1732880000000];

/** Any fixed number: every node that migrates takes this advisory lock first. */
const MIGRATION_LOCK = 4_180_722_001;

export function createDataSource(url: string, poolSize = 10): DataSource {
	return new DataSource({
		type: "postgres",
		url,
		entities,
		migrations,
		synchronize: false,
		migrationsRun: false,
		logging: false,
		extra: { max: poolSize, application_name: "dopamine-store" },
	});
}

/**
 * Creates the database named in `url` when it does not exist yet, so a fresh machine's
 * `npm start` works with nothing configured. Two nodes racing here is fine: the loser's
 * CREATE fails, which means the same thing.
 */
export async function ensureDatabase(url: string): Promise<void> {
	const target = new URL(url);
	const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
	if (!name) throw new Error("DATABASE_URL names no database");
	const probe = new Client({ connectionString: url });
	try {
		await probe.connect();
		return;
	} catch (err: any) {
		if (err?.code !== "3D000") throw err; // anything but "database does not exist"
	} finally {
		await probe.end().catch(() => undefined);
	}
	const admin = new URL(url);
	admin.pathname = "/postgres";
	const client = new Client({ connectionString: admin.toString() });
	await client.connect();
	try {
		await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
	} catch (err: any) {
		// duplicate_database, or (two CREATEs at the same instant) the catalogue's unique index.
		if (err?.code !== "42P04" && err?.code !== "23505") throw err;
	} finally {
		await client.end();
	}
}

/** Runs pending migrations under an advisory lock, so nodes starting together migrate once. */
export async function migrate(ds: DataSource): Promise<string[]> {
	const runner = ds.createQueryRunner();
	await runner.connect();
	try {
		await runner.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
		const done = await ds.runMigrations({ transaction: "each" });
		return done.map(m => m.name);
	} finally {
		await runner.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => undefined);
		await runner.release();
	}
}

/**
 * Creates, connects and migrates: what every node does at start. The migration holds a session
 * advisory lock, so it runs over `sessionUrl` when the pool's URL is a PgBouncer in transaction
 * mode (there, the lock and its unlock could land on two server connections, and the lock would
 * stay held for ever).
 */
export async function openDatabase(url: string, poolSize?: number, sessionUrl = url): Promise<DataSource> {
	await ensureDatabase(sessionUrl);
	if (sessionUrl !== url) {
		// Two: migrate() holds one for its lock while runMigrations takes another.
		const migrator = createDataSource(sessionUrl, 2);
		await migrator.initialize();
		try {
			await migrate(migrator);
		} finally {
			await migrator.destroy().catch(() => undefined);
		}
	}
	const ds = createDataSource(url, poolSize);
	await ds.initialize();
	if (sessionUrl !== url) return ds;
	try {
		await migrate(ds);
	} catch (err) {
		await ds.destroy().catch(() => undefined);
		throw err;
	}
	return ds;
}
