import type { DataSource } from "typeorm";
import type { MessageBody, WireDelivery } from "../contracts";
import { rowsOf } from "../lib/sql";

/**
 * The `deliveries` table, the notifier's delivery log: its row shapes and its statements, one
 * function per statement. The log is the notifier's state: intake
 * inserts (a message's key and channel are unique, so a redelivered or republished message adds
 * nothing), workers take due rows under a lease (SKIP LOCKED: nodes share the work, and a row is
 * never out with two of them at once), and a try's outcome is written right after it.
 */
/** A row of the table: the wire's fields that keep their name and type, and the rest in the column's own. */
export interface DeliveryRow extends Pick<WireDelivery, "id" | "kind" | "channel" | "recipient" | "subject" | "text" | "status" | "attempts"> {
	dedupe_key: string;
	next_attempt_at: Date | null;
	last_error: string | null;
	send_at: Date | null;
	created_at: Date;
	sent_at: Date | null;
}

/** A message as the intake stores it: one row per concrete channel (operators are fanned out first). */
export interface NewDelivery {
	dedupeKey: string;
	kind: string;
	channel: string;
	recipient: string;
	subject: string;
	text: string;
	sendAt: Date | null;
	/** Set when the intake already knows it cannot be delivered (no operators' channel). */
	failedWith: string | null;
}

/** Kind of the row that records a cancel which came before its message (the message then never starts). */
export const CANCEL_MARK = "cancelled";

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

export function wireDelivery(r: DeliveryRow): WireDelivery {
	return {
		id: String(r.id),
		kind: r.kind,
		channel: r.channel,
		recipient: r.recipient,
		subject: r.subject,
		text: r.text,
		status: r.status,
		attempts: r.attempts,
		nextAttemptAt: r.status === "PENDING" ? iso(r.next_attempt_at) : null,
		lastError: r.last_error,
		sendAt: iso(r.send_at),
		createdAt: iso(r.created_at)!,
		sentAt: iso(r.sent_at),
	};
}

const text = (v: unknown, max: number) => (typeof v === "string" ? v : v == null ? "" : String(v)).slice(0, max);

/** A body off the wire, made safe to store whatever a publisher sent (a bad channel fails at send time, with its reason). */
export function normalize(b: Partial<MessageBody>): Omit<NewDelivery, "failedWith"> {
	const at = b.sendAt ? new Date(b.sendAt) : null;
	return {
		dedupeKey: text(b.dedupeKey, 200),
		kind: text(b.kind, 64) || "unknown",
		channel: text(b.channel, 16),
		recipient: text(b.recipient, 320),
		subject: text(b.subject, 1000),
		text: text(b.text, 100_000),
		sendAt: at && Number.isFinite(at.getTime()) ? at : null,
	};
}

/**
 * Inserts new deliveries, skipping any whose (key, channel) is already logged or whose key was
 * cancelled before it arrived. A message due later waits with next_attempt_at NULL for its
 * Agenda job. Returns the rows inserted.
 */
export async function insertDeliveries(db: DataSource, items: NewDelivery[]): Promise<{ id: string; send_at: Date | null; next_attempt_at: Date | null }[]> {
	if (items.length === 0) return [];
	return db.query(
		`INSERT INTO deliveries (dedupe_key, kind, channel, recipient, subject, text, send_at, next_attempt_at, status, last_error)
		 SELECT m.dedupe_key, m.kind, m.channel, m.recipient, m.subject, m.text, m.send_at,
		        CASE WHEN m.failed_with IS NOT NULL THEN NULL WHEN m.send_at > now() THEN NULL ELSE now() END,
		        CASE WHEN m.failed_with IS NOT NULL THEN 'FAILED' ELSE 'PENDING' END, m.failed_with
		 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[])
		      AS m (dedupe_key, kind, channel, recipient, subject, text, send_at, failed_with)
		 WHERE NOT EXISTS (SELECT 1 FROM deliveries c WHERE c.dedupe_key = m.dedupe_key AND c.channel = '' AND c.kind = '${CANCEL_MARK}')
		 ON CONFLICT (dedupe_key, channel) DO NOTHING
		 RETURNING id, send_at, next_attempt_at`,
		[
			items.map(i => i.dedupeKey),
			items.map(i => i.kind),
			items.map(i => i.channel),
			items.map(i => i.recipient),
			items.map(i => i.subject),
			items.map(i => i.text),
			items.map(i => i.sendAt),
			items.map(i => i.failedWith),
		]
	);
}

/**
 * takeDue's statement, exported for the test that reads its plan. The first test on the due time
 * is implied by the second (which waits out the grace of a scheduled one's job) and is there for
 * the index: the walk of deliveries_due stops at now, however many reminders wait for later.
 */
export const TAKE_DUE_SQL = `UPDATE deliveries d SET attempts = d.attempts + 1, lease_until = now() + make_interval(secs => $3::double precision / 1000),
	        worker = $1, updated_at = now()
	 WHERE d.id IN (
	   SELECT id FROM deliveries
	   WHERE status = 'PENDING' AND coalesce(next_attempt_at, send_at) <= now()
	     AND coalesce(next_attempt_at, send_at + make_interval(secs => $4)) <= now()
	     AND (lease_until IS NULL OR lease_until < now())
	   ORDER BY coalesce(next_attempt_at, send_at), id LIMIT $2 FOR UPDATE SKIP LOCKED)
	 RETURNING d.*`;

/**
 * Takes up to `limit` due deliveries for this worker: PENDING, due (its retry time came, or its
 * sendAt passed: a scheduled row whose Agenda job was lost is taken `lostJobGraceSeconds` late),
 * and not leased by a live try. Counts the try now, so a crash mid-send still counts it.
 */
export async function takeDue(db: DataSource, worker: string, limit: number, leaseMs: number, lostJobGraceSeconds = 30): Promise<DeliveryRow[]> {
	return rowsOf<DeliveryRow>(await db.query(TAKE_DUE_SQL, [worker, limit, leaseMs, lostJobGraceSeconds]));
}

/**
 * Fresh planner statistics for the log. A sale's burst makes the table many times larger within
 * seconds, long before autovacuum's next look, and with the statistics of a nearly empty table
 * the planner sorts every PENDING row on each takeDue instead of walking the due index.
 */
export async function refreshStatistics(db: DataSource): Promise<void> {
	await db.query(`ANALYZE deliveries`);
}

/**
 * These tries went through. Conditional on this worker's lease, so a row resent or cancelled
 * meanwhile is left as it is now. Many ids in one statement: the notifier group-commits them.
 */
export async function markSent(db: DataSource, ids: string[], worker: string): Promise<void> {
	await db.query(
		`UPDATE deliveries SET status = 'SENT', sent_at = now(), lease_until = NULL, next_attempt_at = NULL, last_error = NULL, updated_at = now()
		 WHERE id = ANY($1::bigint[]) AND worker = $2 AND status = 'PENDING'`,
		[ids, worker]
	);
}

/** The try failed: tried again at `retryAt`, or FAILED for good when `retryAt` is null. Returns the row if it FAILED now. */
export async function markTryFailed(db: DataSource, id: string, worker: string, error: string, retryAt: Date | null): Promise<DeliveryRow | null> {
	const rows = rowsOf<DeliveryRow>(
		await db.query(
			`UPDATE deliveries SET status = CASE WHEN $4::timestamptz IS NULL THEN 'FAILED' ELSE 'PENDING' END,
			        next_attempt_at = $4, lease_until = NULL, last_error = $3, updated_at = now()
			 WHERE id = $1 AND worker = $2 AND status = 'PENDING'
			 RETURNING *`,
			[id, worker, error.slice(0, 2000), retryAt]
		)
	);
	return rows[0]?.status === "FAILED" ? rows[0] : null;
}

/** A worker that starts again under the same node id takes back what it had leased when it died. */
export async function releaseLeases(db: DataSource, worker: string): Promise<number> {
	const [, n] = (await db.query(`UPDATE deliveries SET lease_until = NULL WHERE worker = $1 AND status = 'PENDING' AND lease_until IS NOT NULL`, [worker])) as [unknown, number];
	return n;
}

/** A scheduled delivery's time came (its Agenda job): due now. */
export async function markDue(db: DataSource, id: string): Promise<boolean> {
	const [, n] = (await db.query(
		`UPDATE deliveries SET next_attempt_at = now(), updated_at = now() WHERE id = $1 AND status = 'PENDING' AND next_attempt_at IS NULL`,
		[id]
	)) as [unknown, number];
	return n === 1;
}

/**
 * Cancels a PENDING delivery by id, or every PENDING delivery of a message by its key. A key not
 * logged yet (the cancel overtook its message) is marked, so the message never starts. Returns the
 * ids cancelled.
 */
export async function cancelDeliveries(db: DataSource, by: { id?: string; dedupeKey?: string }): Promise<string[]> {
	const rows = rowsOf<{ id: string }>(
		await db.query(
			`UPDATE deliveries SET status = 'CANCELLED', next_attempt_at = NULL, lease_until = NULL, updated_at = now()
			 WHERE status = 'PENDING' AND ${by.id ? "id = $1" : "dedupe_key = $1"} RETURNING id`,
			[by.id ?? by.dedupeKey]
		)
	);
	if (by.dedupeKey && rows.length === 0)
		await db.query(
			`INSERT INTO deliveries (dedupe_key, kind, channel, status)
			 SELECT $1::varchar, '${CANCEL_MARK}', '', 'CANCELLED' WHERE NOT EXISTS (SELECT 1 FROM deliveries WHERE dedupe_key = $1::varchar)
			 ON CONFLICT DO NOTHING`,
			[by.dedupeKey]
		);
	return rows.map(r => String(r.id));
}

/** An admin's bulk resend: FAILED deliveries of a kind and channel created in [since, until), again with fresh tries. */
export async function resendFailed(db: DataSource, f: { kind?: string; channel?: string; since?: Date; until?: Date }): Promise<string[]> {
	const rows = rowsOf<{ id: string }>(
		await db.query(
			`UPDATE deliveries SET status = 'PENDING', attempts = 0, next_attempt_at = now(), lease_until = NULL, last_error = NULL,
			        sent_at = NULL, updated_at = now()
			 WHERE status = 'FAILED' AND channel <> ''
			   AND ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR channel = $2)
			   AND ($3::timestamptz IS NULL OR created_at >= $3) AND ($4::timestamptz IS NULL OR created_at < $4)
			 RETURNING id::text`,
			[f.kind ?? null, f.channel ?? null, f.since ?? null, f.until ?? null]
		)
	);
	return rows.map(r => r.id);
}

/** An admin's resend: the delivery goes out again now, with a fresh count of tries. */
export async function resend(db: DataSource, id: string): Promise<DeliveryRow | null> {
	const rows = rowsOf<DeliveryRow>(
		await db.query(
			`UPDATE deliveries SET status = 'PENDING', attempts = 0, next_attempt_at = now(), lease_until = NULL, last_error = NULL,
			        sent_at = NULL, updated_at = now()
			 WHERE id = $1 AND channel <> '' RETURNING *`,
			[id]
		)
	);
	return rows[0] ?? null;
}

/**
 * The log, newest first, filtered, one page. Cancel marks (channel '') are not deliveries and not
 * listed. "Newest" is the order the log took rows in (the id sequence): created_at is each
 * intake transaction's start time, so two intakes running at once can carry it in the other order.
 */
export async function listDeliveries(
	db: DataSource,
	f: { status?: string; channel?: string; kind?: string; recipient?: string; limit: number; offset: number }
): Promise<{ rows: DeliveryRow[]; total: number }> {
	const where = ["channel <> ''"];
	const values: unknown[] = [];
	for (const [col, v] of [["status", f.status], ["channel", f.channel], ["kind", f.kind]] as const)
		if (v) where.push(`${col} = $${values.push(v)}`);
	if (f.recipient) where.push(`lower(recipient) = lower($${values.push(f.recipient)})`);
	const cond = where.join(" AND ");
	const rows: (DeliveryRow & { total: string })[] = await db.query(
		`SELECT *, count(*) OVER () AS total FROM deliveries WHERE ${cond}
		 ORDER BY id DESC LIMIT $${values.push(f.limit)} OFFSET $${values.push(f.offset)}`,
		values
	);
	let total = rows.length ? Number(rows[0].total) : 0;
	if (!rows.length && f.offset > 0) total = Number((await db.query(`SELECT count(*) AS n FROM deliveries WHERE ${cond}`, values.slice(0, -2)))[0].n);
	return { rows, total };
}

/** Finished rows older than the retention go (the stream keeps its messages no longer, so none comes back). */
export async function prune(db: DataSource, retentionDays: number): Promise<number> {
	const [, n] = (await db.query(
		`DELETE FROM deliveries WHERE status <> 'PENDING' AND updated_at < now() - make_interval(days => $1)`,
		[retentionDays]
	)) as [unknown, number];
	return n;
}

/** PENDING deliveries that are due now, and those waiting for a later time: the backlog. */
export async function backlog(db: DataSource): Promise<{ due: number; later: number }> {
	const [r] = await db.query(
		`SELECT count(*) FILTER (WHERE coalesce(next_attempt_at, send_at) <= now())::int AS due,
		        count(*) FILTER (WHERE coalesce(next_attempt_at, send_at) > now())::int AS later
		 FROM deliveries WHERE status = 'PENDING'`
	);
	return { due: r.due, later: r.later };
}
