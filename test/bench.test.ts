import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { dropDatabase, sql } from "./helpers/db";

/** The load tool and the benchmark at small size, so neither can rot (npm test builds dist/ first). */
const run = promisify(execFile);
const DIST = path.join(__dirname, "..", "dist", "bench");

async function node(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
	try {
		const { stdout, stderr } = await run(process.execPath, [path.join(DIST, script), ...args], { timeout: 180_000, maxBuffer: 16 * 2 ** 20 });
		return { code: 0, stdout, stderr };
	} catch (err: any) {
		return { code: err.code ?? -1, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
	}
}

describe("npm run loadtest", () => {
	it("sells exactly the stock to a small crowd, and its table and JSON agree with the database", async () => {
		const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lt-")), "out.json");
		const r = await node("loadtest.js", ["--users", "2000", "--stock", "50", "--connections", "50", "--open-in", "1", "--json", json, "--keep-db"]);
		expect(r.code).toBe(0);
		const report = JSON.parse(fs.readFileSync(json, "utf8"));
		try {
			expect(report).toMatchObject({ requests: 2000, errors: 0, timeouts: 0, db: { granted: 50, distinctBuyers: 50 }, fairness: { ok: true } });
			expect(report.outcomes.GRANTED).toBe(50);
			expect(report.outcomes.GRANTED + report.outcomes.SOLD_OUT).toBe(2000);
			expect(report.latency.p99).toBeGreaterThan(0);
			expect(report.rps).toBeGreaterThan(0);
			// The database, asked independently.
			const [row] = await sql<{ granted: number; buyers: number }>(
				report.database,
				"SELECT count(*)::int AS granted, count(DISTINCT user_id)::int AS buyers FROM slots WHERE product_id = $1 AND status IN ('HELD', 'PAID')",
				[report.productId]
			);
			expect(row).toEqual({ granted: 50, buyers: 50 });
			// The table says the same.
			expect(r.stdout).toMatch(/answers GRANTED\s+50\n/);
			expect(r.stdout).toMatch(/answers SOLD_OUT\s+1950\n/);
			expect(r.stdout).toMatch(/granted in PostgreSQL\s+50 \(50 distinct buyers\)/);
			expect(r.stdout).toMatch(/ok {4}product \d+: order check/);
			expect(r.stdout).toMatch(/peak memory per store process\s+\d+ MB/);
			expect(r.stderr).toMatch(/sent \d+ {2}answered \d+/);
		} finally {
			await dropDatabase(report.database);
		}
	});

	it("exits non-zero when a check fails", async () => {
		const r = await node("loadtest.js", ["--users", "300", "--stock", "20", "--connections", "20", "--open-in", "1", "--expect-granted", "19"]);
		expect(r.code).toBe(1);
		expect(r.stdout).toMatch(/FAIL {2}product \d+: granted = 19 \(PostgreSQL has 20\)/);
	});

	it("explains itself, including that it mints tokens with JWT_SECRET", async () => {
		const r = await node("loadtest.js", ["--help"]);
		expect(r.code).toBe(0);
		expect(r.stdout).toMatch(/JWT_SECRET/);
		expect(r.stdout).toMatch(/tool for test\s+environments/);
	});
});

describe("npm run bench -- --quick", () => {
	it("runs every step at small size and writes the results, the JSON and the chart", async () => {
		const out = fs.mkdtempSync(path.join(os.tmpdir(), "bench-"));
		const r = await node("run.js", ["--quick", "--out", out]);
		expect(r.code).toBe(0);
		const results = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8"));
		expect(results.figures.map((f: { id: string }) => f.id)).toEqual([
			"bare-1", "bare-2", "naive-pg", "redis-lua", "store-soldout-1", "store-soldout-2", "store-grants-1", "store-grants-2", "sale-1", "sale-2",
		]);
		for (const f of results.figures) expect(f.rps).toBeGreaterThan(0);
		const md = fs.readFileSync(path.join(out, "RESULTS.md"), "utf8");
		expect(md).toMatch(/\| run \| requests \| req\/s \| × bare/);
		expect(md).toMatch(/## Projection: 100,000 claims per second/);
		expect(md).toContain("![requests/s and p99 per run](chart.svg)");
		expect(fs.readFileSync(path.join(out, "chart.svg"), "utf8")).toMatch(/^<svg /);
	});
});
