/**
 * Agenda's job table on its PostgreSQL backend, `agenda_jobs`: a table that belongs to Agenda, not
 * to this store. The slots service writes it directly for one reason, speed: a sale's grants get
 * their remind and expire jobs in bulk, one statement for up to 500 grants, instead of two
 * job.save() calls (two INSERTs and two NOTIFYs) per grant. This file is the only place that
 * names the table (mixins/agenda.mixin.ts takes the name from here), and the columns it writes
 * are those of the versions below, read from their table definition (@agendajs/postgres-backend's
 * dist/schema.js) and from job.save(). test/integration/agenda-jobs-schema.test.ts lets the real
 * backend create its table and fails when a column written here is gone or changed type, or when
 * the installed versions are not these: an upgrade of either package makes that test ask for this
 * file to be checked again, and the versions below updated.
 */

/** The exact versions the statement below matches (package.json pins them). */
export const AGENDA_VERSION = "6.2.6";
export const AGENDA_POSTGRES_BACKEND_VERSION = "3.0.6";

/** The backend's default table name (the mixin does not change it; MongoDB's collection takes it too). */
export const AGENDA_JOBS_TABLE = "agenda_jobs";

/** Every column scheduleDueJobsSql writes or returns, with its type as information_schema.columns names it. */
export const AGENDA_JOBS_COLUMNS: Record<string, string> = {
	id: "uuid",
	name: "character varying",
	priority: "integer",
	next_run_at: "timestamp with time zone",
	type: "character varying",
	data: "jsonb",
	disabled: "boolean",
	fork: "boolean",
	last_modified_by: "character varying",
};

/**
 * Schedules the remind and expire jobs of up to 500 grants whose jobs are due (HELD, and
 * jobs_scheduled_at NULL), in ONE statement, and marks those slots: it writes `agenda_jobs` and
 * `slots` in one CTE and lives here, with the table it is about (the jobs). The due slots are
 * picked with SKIP LOCKED (`slots` nodes share the work); each job row is what job.save() would
 * insert (name, priority 0, next_run_at, type 'normal', data {slotId}, not disabled, not forked,
 * last_modified_by the node). A reminder is skipped when its time would not come before the
 * expiry. Returns how many slots were marked and the jobs due within one of Agenda's scans, which
 * the caller announces on Agenda's notification channel as save() would. Parameters: $1 seconds of
 * the reminder before the expiry, $2 the node's name, $3 Agenda's scan interval in seconds.
 */
export const scheduleDueJobsSql = `WITH due AS (
					   SELECT id, expires_at FROM slots WHERE status = 'HELD' AND jobs_scheduled_at IS NULL
					   ORDER BY held_at LIMIT 500 FOR UPDATE SKIP LOCKED
					 ), wanted AS (
					   SELECT 'slot.remind' AS name, greatest(now(), d.expires_at - make_interval(secs => $1)) AS at, d.id FROM due d
					   WHERE greatest(now(), d.expires_at - make_interval(secs => $1)) < d.expires_at
					   UNION ALL
					   SELECT 'slot.expire', d.expires_at, d.id FROM due d
					 ), jobs AS (
					   INSERT INTO agenda_jobs (name, priority, next_run_at, type, data, disabled, fork, last_modified_by)
					   SELECT w.name, 0, w.at, 'normal', jsonb_build_object('slotId', w.id::text), false, false, $2 FROM wanted w
					   RETURNING id, name, next_run_at, priority
					 ), marked AS (
					   UPDATE slots s SET jobs_scheduled_at = now() FROM due WHERE s.id = due.id RETURNING 1
					 )
					 SELECT (SELECT count(*)::int FROM marked) AS slots,
					        (SELECT coalesce(json_agg(json_build_object('id', id, 'name', name, 'nextRunAt', next_run_at, 'priority', priority)), '[]')
					         FROM jobs WHERE next_run_at <= now() + make_interval(secs => $3)) AS soon`;
