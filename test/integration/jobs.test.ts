import { api } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, waitFor } from "../helpers/nodes";
import { storeForFile } from "../helpers/store";
import { claim, createSale, holdUnitByHand, markPaidByHand, seedBuyers, sleep, slotStatus } from "../helpers/sale";

/**
 * The grant's Agenda jobs on short clocks: a 3 s slot, the reminder 1 s before expiry, Agenda
 * polling every 200 ms, and the safety-net sweep slowed to a minute so the jobs alone must act.
 * Every time is asserted as a window: not before T, by T + slack.
 */
const SLACK = 2500;
const store = storeForFile("jobs", {
	SLOT_TTL_SECONDS: "3",
	SLOT_REMINDER_BEFORE_SECONDS: "1",
	SLOT_SWEEP_INTERVAL_MS: "60000",
	AGENDA_PROCESS_EVERY_MS: "200",
	// The reminder's English subject is asserted below (the default is Korean).
	LOCALE: "en",
});
const DB = store.db;
const env = store.env;

const statusOf = (slotId: string) => slotStatus(DB, slotId);

async function expectExpiryInWindow(slotId: string, expiresAt: number) {
	while (Date.now() < expiresAt - 100) {
		expect(await statusOf(slotId)).toBe("HELD");
		await sleep(100);
	}
	await waitFor("the expiry", async () => (await statusOf(slotId)) === "EXPIRED", SLACK + 1000);
	expect(Date.now()).toBeLessThan(expiresAt + SLACK);
}

describe("slot jobs", () => {
	it("reminds in its window, expires in its window, and the next buyer gets the unit", async () => {
		const product = await createSale(DB, 1);
		const [b, next] = await seedBuyers(DB, 2, "remind");
		const g = await claim(store.node.url, product, b);
		expect(g.type).toBe("GRANTED");
		expect((await claim(store.node.url, product, next)).type).toBe("SOLD_OUT");
		const expiresAt = Date.parse(g.body.slot.expiresAt);
		const remindAt = expiresAt - 1000;
		const reminders = () => store.node.messages.filter(m => m.kind === "slot.reminder" && m.recipient === "remind1@example.com");
		while (Date.now() < remindAt - 100) {
			expect(reminders()).toHaveLength(0);
			await sleep(100);
		}
		await waitFor("the reminder", () => reminders().length === 1, SLACK + 1000);
		expect(Date.now()).toBeLessThan(remindAt + SLACK);
		expect(reminders()[0].subject).toMatch(/^Your slot for Test drop expires in 1 minute$/);
		await expectExpiryInWindow(g.body.slot.id, expiresAt);
		await sleep(300);
		expect(reminders()).toHaveLength(1);
		// EXPIRED in the buyer's own list; the sold-out answer withdrawn; the next claimant gets it.
		const mine = await api(store.node.url).get("/api/me/slots", b.token);
		expect(mine.body.slots).toEqual([expect.objectContaining({ id: g.body.slot.id, status: "EXPIRED" })]);
		await waitFor("the unit to be sold again", async () => (await claim(store.node.url, product, next)).type === "GRANTED", 3000);
	});

	it("sends no reminder and expires nothing once the slot is paid", async () => {
		const product = await createSale(DB, 1);
		const [b] = await seedBuyers(DB, 1, "payer");
		const g = await claim(store.node.url, product, b);
		await waitFor("the jobs to be scheduled", async () => (await sql(DB, "SELECT 1 FROM slots WHERE id = $1 AND jobs_scheduled_at IS NOT NULL", [g.body.slot.id])).length === 1);
		await markPaidByHand(DB, g.body.slot.id);
		await sleep(3000 + SLACK);
		expect(await statusOf(g.body.slot.id)).toBe("PAID");
		expect(store.node.messages.filter(m => m.recipient === "payer1@example.com" && m.kind === "slot.reminder")).toHaveLength(0);
	});

	it("schedules the jobs of a grant a crash left unscheduled", async () => {
		const product = await createSale(DB, 1);
		const [b] = await seedBuyers(DB, 1, "crash");
		// A grant committed, but its node died before scheduling its jobs: jobs_scheduled_at stays NULL.
		const slot = await holdUnitByHand(DB, product, b.id, { expiresIn: "3 seconds" });
		const swept = await store.node.broker.call("slots.sweep", {});
		expect(swept).toEqual({ reclaimed: 0, scheduled: 1 });
		expect(await sql(DB, "SELECT 1 FROM slots WHERE id = $1 AND jobs_scheduled_at IS NOT NULL", [slot.id])).toHaveLength(1);
		await expectExpiryInWindow(String(slot.id), new Date(slot.expires_at).getTime());
	});

	it("still expires in its window after the node that scheduled it restarts", async () => {
		const db = freshDatabaseUrl("restart");
		const first = await startNode({ ...env, DATABASE_URL: db });
		let second: StoreNode | undefined;
		try {
			const product = await createSale(db, 1);
			const [b] = await seedBuyers(db, 1, "restart");
			const g = await claim(first.url, product, b);
			await waitFor("the jobs to be scheduled", async () => (await sql(db, "SELECT 1 FROM slots WHERE id = $1 AND jobs_scheduled_at IS NOT NULL", [g.body.slot.id])).length === 1);
			await first.stop();
			const jobs = await sql(db, "SELECT name FROM agenda_jobs ORDER BY name");
			expect(jobs.map(j => j.name)).toEqual(["slot.expire", "slot.remind"]);
			second = await startNode({ ...env, DATABASE_URL: db });
			const expiresAt = Date.parse(g.body.slot.expiresAt);
			while (Date.now() < expiresAt - 100) {
				expect((await sql<{ status: string }>(db, "SELECT status FROM slots WHERE id = $1", [g.body.slot.id]))[0].status).toBe("HELD");
				await sleep(100);
			}
			await waitFor("the expiry after restart", async () => (await sql<{ status: string }>(db, "SELECT status FROM slots WHERE id = $1", [g.body.slot.id]))[0].status === "EXPIRED", SLACK + 1000);
			expect(Date.now()).toBeLessThan(expiresAt + SLACK);
		} finally {
			await second?.stop();
			await first.stop().catch(() => undefined);
			await dropDatabase(db);
		}
	});

	it("lets the sweep expire a slot whose job was deleted", async () => {
		const product = await createSale(DB, 1);
		const [b] = await seedBuyers(DB, 1, "lost");
		const g = await claim(store.node.url, product, b);
		await waitFor("the jobs to be scheduled", async () => (await sql(DB, "SELECT 1 FROM slots WHERE id = $1 AND jobs_scheduled_at IS NOT NULL", [g.body.slot.id])).length === 1);
		await sql(DB, "DELETE FROM agenda_jobs WHERE data->>'slotId' = $1", [g.body.slot.id]);
		await sleep(Math.max(0, Date.parse(g.body.slot.expiresAt) - Date.now()) + 800);
		expect(await statusOf(g.body.slot.id)).toBe("HELD"); // no job left to expire it...
		await store.node.broker.call("slots.sweep", {}); // ...until the safety net runs
		expect(await statusOf(g.body.slot.id)).toBe("EXPIRED");
	});
});
