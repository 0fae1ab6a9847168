import type { Service } from "moleculer";
import type { Config } from "../config";

/**
 * The most PostgreSQL connections one node opens, from the services it runs: one store pool
 * (DB_POOL_SIZE) if any service uses the database, plus one Agenda pool (AGENDA_POOL_SIZE) per
 * service that schedules jobs on PostgreSQL. The mixins mark their services (metadata pgPool /
 * agendaPool), so a service that gains a pool is counted without editing this file.
 * An operator adds these up over the nodes to size max_connections or PgBouncer (docs/cluster.md).
 */
export interface PgBudget {
	total: number;
	store: { size: number; services: string[] };
	agenda: { size: number; services: string[] };
}

export function pgBudget(config: Config, services: Pick<Service, "name" | "metadata">[]): PgBudget {
	const storeUsers = services.filter(s => s.metadata?.pgPool === "store").map(s => s.name);
	const agendaUsers = config.agendaBackend === "postgres" ? services.filter(s => s.metadata?.agendaPool === true).map(s => s.name) : [];
	const store = storeUsers.length ? config.dbPoolSize : 0;
	return {
		total: store + agendaUsers.length * config.agendaPoolSize,
		store: { size: store, services: storeUsers },
		agenda: { size: config.agendaPoolSize, services: agendaUsers },
	};
}

export function describeBudget(b: PgBudget): string {
	if (b.total === 0) return "PostgreSQL: this node opens no connection";
	const parts = [];
	if (b.store.size) parts.push(`store pool ${b.store.size} (DB_POOL_SIZE)`);
	if (b.agenda.services.length) parts.push(`Agenda ${b.agenda.services.length} × ${b.agenda.size} (AGENDA_POOL_SIZE; ${b.agenda.services.join(", ")})`);
	return `PostgreSQL: this node opens at most ${b.total} connections: ${parts.join(" + ")}`;
}
