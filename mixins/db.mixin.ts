import type { Service, ServiceBroker, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { DataSource } from "typeorm";
import { configOf } from "../config";
import { openDatabase } from "../entities";

/**
 * One TypeORM DataSource per broker, shared by every service on it that needs PostgreSQL, opened
 * (database created if missing, migrations run) by the first such service to start and closed by
 * the last to stop.
 */
interface Shared {
	ready: Promise<DataSource>;
	users: number;
}
const shared = new WeakMap<ServiceBroker, Shared>();

export async function acquireDatabase(broker: ServiceBroker): Promise<DataSource> {
	let entry = shared.get(broker);
	if (!entry) {
		const config = configOf(broker);
		const ready = openDatabase(config.databaseUrl, config.dbPoolSize, config.sessionDatabaseUrl);
		entry = { ready, users: 0 };
		shared.set(broker, entry);
		ready.catch(() => shared.delete(broker));
	}
	entry.users += 1;
	return entry.ready;
}

export async function releaseDatabase(broker: ServiceBroker): Promise<void> {
	const entry = shared.get(broker);
	if (!entry) return;
	entry.users -= 1;
	if (entry.users > 0) return;
	shared.delete(broker);
	const ds = await entry.ready.catch(() => null);
	if (ds?.isInitialized) await ds.destroy();
}

/** The broker's open DataSource, or null when no service on this node uses the database. */
export function databaseOf(broker: ServiceBroker): Promise<DataSource> | null {
	return shared.get(broker)?.ready ?? null;
}

export type WithDb = Service & { db: DataSource };

export function DbMixin(): Partial<ServiceSchema<ServiceSettingSchema, any>> {
	return {
		// Read by lib/pg-budget.ts: this service shares the node's store pool.
		metadata: { pgPool: "store" },
		async started(this: WithDb) {
			this.db = await acquireDatabase(this.broker);
		},
		async stopped(this: WithDb) {
			await releaseDatabase(this.broker);
		},
	};
}
