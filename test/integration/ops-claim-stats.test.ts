import type { DataSource } from "typeorm";
import { openDatabase } from "../../entities";
import { ClaimStats } from "../../services/allocator/claim-stats";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { createSale } from "../helpers/sale";

/** The allocator's recorder of the report's facts, against a real PostgreSQL. */
describe("claim stats recorder", () => {
	const DB = freshDatabaseUrl("cstats");
	let ds: DataSource;
	let productId: string;

	beforeAll(async () => {
		ds = await openDatabase(DB, 2);
		productId = await createSale(DB, 3);
	});

	afterAll(async () => {
		await ds?.destroy();
		await dropDatabase(DB);
	});

	it("adds per-second counts and widens per-epoch seq ranges; drops unknown products and non-sale outcomes", async () => {
		let now = Date.parse("2026-11-25T10:00:00.200Z");
		const stats = new ClaimStats(() => ds, () => undefined, () => now);
		stats.record(productId, "GRANTED", 1, 1);
		stats.record(productId, "GRANTED", 1, 2);
		stats.record(productId, "SOLD_OUT", 1, 4);
		stats.record(productId, "BUSY");
		stats.record(productId, "NOT_FOUND");
		stats.record("999999", "GRANTED", 1, 1);
		now += 1000;
		stats.record(productId, "SOLD_OUT", 1, 3);
		await stats.flush();
		// A second node (or a later flush) adds to the same rows.
		const other = new ClaimStats(() => ds, () => undefined, () => now);
		other.record(productId, "SOLD_OUT", 1, 9);
		await other.flush();

		expect(await sql(DB, "SELECT extract(epoch FROM second)::int AS s, outcome, n FROM claim_stats ORDER BY 1, 2")).toEqual([
			{ s: 1795600800, outcome: "BUSY", n: 1 },
			{ s: 1795600800, outcome: "GRANTED", n: 2 },
			{ s: 1795600800, outcome: "SOLD_OUT", n: 1 },
			{ s: 1795600801, outcome: "SOLD_OUT", n: 2 },
		]);
		expect(await sql(DB, "SELECT product_id::text, epoch, outcome, n, min_seq::int, max_seq::int FROM claim_epochs ORDER BY outcome")).toEqual([
			{ product_id: productId, epoch: 1, outcome: "GRANTED", n: 2, min_seq: 1, max_seq: 2 },
			{ product_id: productId, epoch: 1, outcome: "SOLD_OUT", n: 3, min_seq: 3, max_seq: 9 },
		]);
	});

	it("keeps what it could not write and writes it, once, on the next flush", async () => {
		await sql(DB, "DELETE FROM claim_stats; DELETE FROM claim_epochs");
		const warnings: string[] = [];
		const stats = new ClaimStats(() => ds, w => warnings.push(w), () => Date.parse("2026-11-25T10:00:05Z"));
		stats.record(productId, "GRANTED", 2, 1);
		// The fault: the table is not there for one flush.
		await sql(DB, "ALTER TABLE claim_epochs RENAME TO claim_epochs_away");
		try {
			await stats.flush();
		} finally {
			await sql(DB, "ALTER TABLE claim_epochs_away RENAME TO claim_epochs");
		}
		expect(warnings).toHaveLength(1);
		expect(warnings[0]).toMatch(/kept for the next flush/);
		// Rolled back whole: neither table has half of it.
		expect(await sql(DB, "SELECT * FROM claim_stats")).toEqual([]);
		stats.record(productId, "GRANTED", 2, 2);
		await stats.flush();
		expect(await sql(DB, "SELECT n FROM claim_stats")).toEqual([{ n: 2 }]);
		expect(await sql(DB, "SELECT n, min_seq::int, max_seq::int FROM claim_epochs")).toEqual([{ n: 2, min_seq: 1, max_seq: 2 }]);
		await stats.flush();
		expect(await sql(DB, "SELECT n FROM claim_stats")).toEqual([{ n: 2 }]);
	});

	it("writes what is left when stopped", async () => {
		await sql(DB, "DELETE FROM claim_stats; DELETE FROM claim_epochs");
		const stats = new ClaimStats(() => ds, () => undefined).start();
		stats.record(productId, "ALREADY_HOLDING", 3, 7);
		await stats.stop();
		expect(await sql(DB, "SELECT outcome, n FROM claim_stats")).toEqual([{ outcome: "ALREADY_HOLDING", n: 1 }]);
	});
});
