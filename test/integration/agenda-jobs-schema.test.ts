import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sql } from "../helpers/db";
import { waitFor } from "../helpers/nodes";
import { storeForFile } from "../helpers/store";
import { createSale, holdUnitByHand, seedBuyers, slotStatus } from "../helpers/sale";
import {
	AGENDA_JOBS_COLUMNS,
	AGENDA_JOBS_TABLE,
	AGENDA_POSTGRES_BACKEND_VERSION,
	AGENDA_VERSION,
	scheduleDueJobsSql,
} from "../../store/agenda-jobs";

/**
 * store/agenda-jobs.ts writes Agenda's own table, which Agenda may change in any release: this
 * file fails when it did. The store's node starts Agenda on a fresh database, so the real backend
 * creates its table; the test then reads the table's columns, checks the installed versions are
 * the ones the module names, and runs the module's statement to show Agenda runs what it inserts.
 * (test/integration/jobs.test.ts covers the same jobs end to end, through the sweep.)
 */
const store = storeForFile("agendajobs", {
	SLOT_REMINDER_BEFORE_SECONDS: "1",
	// The sweep would schedule the jobs itself: slowed, so only the statement below does.
	SLOT_SWEEP_INTERVAL_MS: "60000",
	AGENDA_PROCESS_EVERY_MS: "200",
	LOCALE: "en",
});
const DB = store.db;
const ROOT = join(__dirname, "../..");
const installed = (pkg: string) => JSON.parse(readFileSync(join(ROOT, "node_modules", pkg, "package.json"), "utf8")).version as string;
const pinned = (pkg: string) => JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).dependencies[pkg] as string;

describe("Agenda's job table, as store/agenda-jobs.ts writes it", () => {
	it("is the Agenda the module names: installed and pinned versions (an upgrade means checking the module again)", () => {
		expect({ agenda: installed("agenda"), backend: installed("@agendajs/postgres-backend") }).toEqual({
			agenda: AGENDA_VERSION,
			backend: AGENDA_POSTGRES_BACKEND_VERSION,
		});
		expect({ agenda: pinned("agenda"), backend: pinned("@agendajs/postgres-backend") }).toEqual({
			agenda: AGENDA_VERSION,
			backend: AGENDA_POSTGRES_BACKEND_VERSION,
		});
	});

	it("has every column the module writes, with the type it expects; no required column is left out", async () => {
		const columns = await sql<{ column_name: string; data_type: string; is_nullable: string; column_default: string | null }>(
			DB,
			`SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
			 WHERE table_schema = current_schema() AND table_name = $1`,
			[AGENDA_JOBS_TABLE]
		);
		expect(columns.length).toBeGreaterThan(0);
		const types = Object.fromEntries(columns.map(c => [c.column_name, c.data_type]));
		for (const [column, type] of Object.entries(AGENDA_JOBS_COLUMNS)) expect(`${column}: ${types[column]}`).toBe(`${column}: ${type}`);
		// A column the backend requires and fills by no default would make the module's INSERT fail.
		const required = columns.filter(c => c.is_nullable === "NO" && c.column_default === null).map(c => c.column_name);
		expect(required.filter(c => !(c in AGENDA_JOBS_COLUMNS))).toEqual([]);
	});

	it("runs the jobs the module's statement inserts: the reminder, then the expiry", async () => {
		const product = await createSale(DB, 1);
		const [b] = await seedBuyers(DB, 1, "agendajobs");
		// A grant whose jobs are not scheduled yet (jobs_scheduled_at NULL), expiring in 3 s.
		const slot = await holdUnitByHand(DB, product, b.id, { expiresIn: "3 seconds" });
		const [r] = await sql<{ slots: number; soon: unknown[] }>(DB, scheduleDueJobsSql, [1, "agenda-jobs-test", 0.2]);
		expect(r.slots).toBe(1);
		expect(await sql(DB, `SELECT name FROM ${AGENDA_JOBS_TABLE} WHERE data->>'slotId' = $1 ORDER BY name`, [slot.id])).toEqual([
			{ name: "slot.expire" },
			{ name: "slot.remind" },
		]);
		expect(await sql(DB, "SELECT 1 FROM slots WHERE id = $1 AND jobs_scheduled_at IS NOT NULL", [slot.id])).toHaveLength(1);
		await waitFor(
			"the reminder",
			() => store.node.messages.some(m => m.kind === "slot.reminder" && m.recipient === "agendajobs1@example.com"),
			5000
		);
		await waitFor("the expiry", async () => (await slotStatus(DB, slot.id)) === "EXPIRED", 6000);
	});
});
