import { Client } from "pg";
import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { claim, createSale, seedBuyers, sleep, slotStatus } from "../helpers/sale";

/**
 * Expiry decided on the database's clock at the decision (issue 14, point 10): a slot.expire job
 * that fires before expiresAt expires nothing, and a confirm that waited on a lock until after
 * expiresAt does not pay. A one-minute slot, so no job or sweep of the store's own interferes.
 */
const DB = freshDatabaseUrl("expclock");
let node: StoreNode;

beforeAll(async () => {
	node = await startNode({
		DATABASE_URL: DB,
		JWT_SECRET: TEST_SECRET,
		SLOT_TTL_SECONDS: "60",
		SLOT_REMINDER_BEFORE_SECONDS: "10",
		SLOT_SWEEP_INTERVAL_MS: "60000",
		AGENDA_PROCESS_EVERY_MS: "200",
		PAYMENT_LATENCY_MS: "0",
		// The confirm below waits on a held lock for as long as the test takes on a slow machine.
		REQUEST_TIMEOUT_MS: "30000",
	});
});
afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

const fireExpireJobNow = async (slotId: string) =>
	expect(await sql(DB, "UPDATE agenda_jobs SET next_run_at = now() WHERE name = 'slot.expire' AND data->>'slotId' = $1 RETURNING 1", [slotId])).toHaveLength(1);
/** Jobs are removed once complete (removeOnComplete): a job that is gone has run. */
const expireJobs = async (slotId: string) => (await sql(DB, "SELECT 1 FROM agenda_jobs WHERE name = 'slot.expire' AND data->>'slotId' = $1", [slotId])).length;

it("runs a slot.expire job that fires early without expiring anything", async () => {
	const product = await createSale(DB, 1);
	const [b] = await seedBuyers(DB, 1, "early");
	const g = await claim(node.url, product, b);
	expect(g.type).toBe("GRANTED");
	// The grant's expire job, as a node whose clock runs a minute ahead would have scheduled it: due now.
	await waitFor("the jobs to be scheduled", async () => (await sql(DB, "SELECT 1 FROM slots WHERE id = $1 AND jobs_scheduled_at IS NOT NULL", [g.body.slot.id])).length === 1);
	await fireExpireJobNow(g.body.slot.id);
	await waitFor("the early job to run", async () => (await expireJobs(g.body.slot.id)) === 0, 10_000);
	expect(await slotStatus(DB, g.body.slot.id)).toBe("HELD");
	// The same job, once the slot is past its expiry, does expire it: the job itself works.
	await sql(DB, "UPDATE slots SET expires_at = now() - interval '1 second' WHERE id = $1", [g.body.slot.id]);
	const job = (node.broker.getLocalService("slots") as any).agenda.create("slot.expire", { slotId: g.body.slot.id });
	job.schedule(new Date());
	await job.save();
	await waitFor("the due job to expire the slot", async () => (await slotStatus(DB, g.body.slot.id)) === "EXPIRED", 10_000);
});

it("fails a confirm that waited on the slot's lock until after its expiry", async () => {
	const product = await createSale(DB, 1);
	const [b] = await seedBuyers(DB, 1, "locked");
	const g = await claim(node.url, product, b);
	expect(g.type).toBe("GRANTED");
	const p = await api(node.url).post(`/api/slots/${g.body.slot.id}/payments`, { method: "points" }, b.token, { "idempotency-key": "locked-1" });
	expect(p.status).toBe(201);
	// Someone holds the slot's row (an operator's long transaction, a slow sweep): the confirm starts
	// while the slot has a minute left and waits on the lock. While it waits, the holder moves the
	// expiry to just ahead and keeps the lock until the database's clock is past it. No step races a
	// deadline of the test's own, so this holds on a machine of any speed.
	const holder = new Client({ connectionString: DB });
	await holder.connect();
	try {
		await holder.query("BEGIN");
		const [{ pid }] = (await holder.query("SELECT pg_backend_pid() AS pid")).rows;
		await holder.query("SELECT id FROM slots WHERE id = $1 FOR UPDATE", [g.body.slot.id]);
		const confirming = api(node.url).post(`/api/payments/${p.body.payment.id}/confirm`, undefined, b.token);
		await waitFor("the confirm to wait on the slot's lock", async () => {
			const rows = await sql(
				DB,
				"SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%from slots%' AND pid <> $1",
				[pid]
			);
			return rows.length >= 1;
		});
		const past = (await holder.query("UPDATE slots SET expires_at = clock_timestamp() + interval '200 milliseconds' WHERE id = $1 RETURNING 1", [g.body.slot.id])).rows;
		expect(past).toHaveLength(1);
		await waitFor("the database clock to pass the expiry", async () =>
			(await holder.query("SELECT clock_timestamp() > expires_at + interval '100 milliseconds' AS past FROM slots WHERE id = $1", [g.body.slot.id])).rows[0].past === true
		);
		await holder.query("COMMIT");
		const r = await confirming;
		expect([r.status, r.body.type]).toEqual([410, "SLOT_EXPIRED"]);
		expect(r.body.data.payment).toMatchObject({ status: "FAILED", failureReason: "SLOT_EXPIRED" });
		expect(await slotStatus(DB, g.body.slot.id)).toBe("HELD"); // not paid; the expiry takes it from here
	} finally {
		await holder.query("ROLLBACK").catch(() => undefined);
		await holder.end();
	}
});
