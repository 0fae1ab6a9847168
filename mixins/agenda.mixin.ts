import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Pool } from "pg";
import { configOf } from "../config";
import { acquireDatabase, releaseDatabase } from "./db.mixin";
import { AGENDA_JOBS_TABLE } from "../store/agenda-jobs";

/**
 * Agenda (timed jobs in the database: they survive restarts, and with several nodes each runs
 * once) as a mixin, on its PostgreSQL backend by default, MongoDB with AGENDA_BACKEND=mongo.
 * Agenda 6 is ESM-only: it is loaded with import(), which works from CommonJS and in jest.
 *
 * Known Agenda facts this store designs around: unique() is a read-then-write, and a job that
 * runs past its lock lifetime may run again elsewhere, so every job here is conditional and safe
 * to run twice; exactly-once lives in the database, not in Agenda.
 */
export interface AgendaJob {
	attrs: { name: string; data: any; nextRunAt?: Date | null };
}
export interface AgendaLike {
	define(name: string, handler: (job: AgendaJob) => Promise<void>, options?: object): void;
	create(name: string, data: unknown): { schedule(when: Date): unknown; unique(q: object): unknown; save(): Promise<unknown> };
	cancel(query: { name?: string; data?: unknown }): Promise<number>;
	start(): Promise<void>;
	stop(closeConnection?: boolean): Promise<void>;
	on(event: string, listener: (...args: any[]) => void): unknown;
}

export type WithAgenda = Service & {
	agenda: AgendaLike;
	agendaPool: Pool | null;
	agendaBackend?: { notificationChannel?: { on?(e: string, l: (err: Error) => void): void; disconnect?(): Promise<void> } };
	/** Each service using the mixin defines its jobs here; called before Agenda starts. */
	defineJobs(agenda: AgendaLike): void;
};

const AGENDA_SCHEMA_LOCK = 4_180_722_002;

/**
 * import() that TypeScript leaves alone (it would turn it into require). Compiled afresh on each
 * call: V8 caches compiled functions by source, and jest (which can import ESM only with
 * --experimental-vm-modules) ties a cached import() to the test file that compiled it first.
 */
const load = (specifier: string): Promise<any> =>
	new Function("specifier", `return import(specifier) /* ${Math.random()} */`)(specifier);

export function AgendaMixin(): Partial<ServiceSchema<ServiceSettingSchema, any>> {
	return {
		// Read by lib/pg-budget.ts: this service opens an Agenda pool of its own.
		metadata: { agendaPool: true },
		async started(this: WithAgenda) {
			const config = configOf(this.broker);
			// The database must exist and be migrated first, whatever order the mixins start in.
			await acquireDatabase(this.broker);
			const { Agenda } = await load("agenda");
			let backend: unknown;
			this.agendaPool = null;
			if (config.agendaBackend === "mongo") {
				const { MongoBackend } = await load("@agendajs/mongo-backend").catch(() => {
					throw new Error("AGENDA_BACKEND=mongo needs the @agendajs/mongo-backend package installed");
				});
				backend = new MongoBackend({ address: config.mongoUrl, collection: AGENDA_JOBS_TABLE });
			} else {
				const { PostgresBackend } = await load("@agendajs/postgres-backend");
				// A small pool of its own: the job tables live beside the store's, in the same database.
				this.agendaPool = new Pool({ connectionString: config.sessionDatabaseUrl, max: config.agendaPoolSize, application_name: "dopamine-agenda" });
				// An idle client the server drops (restart, failover) must not crash the node.
				this.agendaPool.on("error", err => this.logger.warn("agenda pool:", err.message));
				const pg = new PostgresBackend({ pool: this.agendaPool, name: this.broker.nodeID });
				// Its LISTEN connection re-emits connection errors; unheard, one would crash the node.
				pg.notificationChannel?.on?.("error", (err: Error) => this.logger.warn("agenda notifications:", err.message));
				this.agendaBackend = pg;
				backend = pg;
			}
			const create = () => {
				this.agenda = new Agenda({
					backend,
					name: this.broker.nodeID,
					processEvery: config.agendaProcessEveryMs,
					defaultLockLifetime: config.agendaLockLifetimeMs,
					removeOnComplete: true,
				}) as AgendaLike;
				this.agenda.on("error", (err: Error) => this.logger.warn("agenda:", err.message));
				this.defineJobs(this.agenda);
			};
			if (!this.agendaPool) {
				create();
				return void (await this.agenda.start());
			}
			// The backend creates its table with plain DDL as soon as Agenda is constructed: services
			// and nodes starting together would race on it, so they take turns under an advisory lock
			// from construction to start.
			const lock = await this.agendaPool.connect();
			try {
				await lock.query("SELECT pg_advisory_lock($1)", [AGENDA_SCHEMA_LOCK]);
				create();
				await this.agenda.start();
			} finally {
				await lock.query("SELECT pg_advisory_unlock($1)", [AGENDA_SCHEMA_LOCK]).catch(() => undefined);
				lock.release();
			}
		},

		async stopped(this: WithAgenda) {
			await this.agenda?.stop(true).catch(err => this.logger.warn("agenda stop:", err.message));
			// Make sure the LISTEN connection is back in the pool before the pool closes.
			await this.agendaBackend?.notificationChannel?.disconnect?.().catch(() => undefined);
			await this.agendaPool?.end().catch(() => undefined);
			await releaseDatabase(this.broker);
		},
	};
}
