import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { spawn } from "node:child_process";
import { fire, fireOpen, Shot } from "../../bench/lib/load";
import { dropDatabase, sql } from "../helpers/db";
import { track, untrack } from "../helpers/resources";

/** The load tool and the benchmark at small size, so neither can rot (npm test builds dist/ first). */
const run = promisify(execFile);
const DIST = path.join(__dirname, "..", "..", "dist", "bench");

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
		// Exit 1 is a failed check; anything else (2: the tool itself failed) shows its stderr here.
		expect({ code: r.code, stderr: r.code === 1 ? "" : r.stderr.slice(-2000) }).toEqual({ code: 1, stderr: "" });
		expect(r.stdout).toMatch(/FAIL {2}product \d+: granted = 19 \(PostgreSQL has 20\)/);
	});

	it("explains itself, including that it mints tokens with JWT_SECRET", async () => {
		const r = await node("loadtest.js", ["--help"]);
		expect(r.code).toBe(0);
		expect(r.stdout).toMatch(/JWT_SECRET/);
		expect(r.stdout).toMatch(/tool for test\s+environments/);
	});
});

/**
 * A server in its own process that answers 409 at once, except that its first request blocks its
 * event loop for `stallMs` (a GC pause, a slow disk): everything sent meanwhile queues.
 */
async function stallingServer(stallMs: number): Promise<{ url: string; stop(): Promise<void> }> {
	const code = `
		let first = true;
		const server = require("node:http").createServer((req, res) => {
			if (first) { first = false; const until = Date.now() + ${stallMs}; while (Date.now() < until); }
			req.resume();
			res.writeHead(409, { "Content-Type": "application/json", "Content-Length": 2 });
			res.end("{}");
		}).listen(0, "127.0.0.1", () => process.stdout.write(String(server.address().port) + "\\n"));`;
	const proc = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
	const key = {};
	const stop = () =>
		new Promise<void>(resolve => {
			untrack(key);
			if (proc.exitCode !== null) return resolve();
			proc.once("exit", () => resolve());
			proc.kill("SIGKILL");
		});
	track(key, { name: `stalling server ${proc.pid}`, close: stop });
	const port = await new Promise<string>((resolve, reject) => {
		proc.stdout!.once("data", d => resolve(String(d).trim()));
		proc.once("exit", c => reject(new Error(`server exited ${c}`)));
	});
	return { url: `http://127.0.0.1:${port}`, stop };
}

describe("the load tool's open loop (--rate)", () => {
	const shots = (n: number): Shot[] => Array.from({ length: n }, (_, i) => ({ target: 0, method: "POST", path: "/claim", headers: { authorization: `Bearer t${i}` } }));

	it("sends on schedule whatever the answers, so a server's stall shows in every claim sent during it", async () => {
		const stallMs = 1500;
		const server = await stallingServer(stallMs);
		try {
			// 400 claims/s for 2.5 s: about 600 are due while the server is stalled.
			const slow: number[] = [];
			const open = await fireOpen(shots(1000), { targets: [server.url], connections: 50, rate: 400, onHit: (_i, h) => h.ms > 1000 && slow.push(h.ms) });
			expect(open).toMatchObject({ requests: 1000, errors: 0, timeouts: 0, statuses: { "409": 1000 } });
			expect(open.seconds).toBeGreaterThan(2.4);
			// The claims due in the stall's first 500 ms waited over a second each, counted from their scheduled time.
			expect(slow.length).toBeGreaterThanOrEqual(150);
			expect(open.latency.max).toBeGreaterThanOrEqual(stallMs - 100);
		} finally {
			await server.stop();
		}
	});

	it("where a closed loop with 10 connections hides the same stall in at most 10 claims", async () => {
		const server = await stallingServer(1500);
		try {
			const slow: number[] = [];
			const closed = await fire(shots(1000), { targets: [server.url], connections: 10, onHit: (_i, h) => h.ms > 1000 && slow.push(h.ms) });
			expect(closed).toMatchObject({ requests: 1000, errors: 0, timeouts: 0 });
			expect(slow.length).toBeGreaterThanOrEqual(1);
			expect(slow.length).toBeLessThanOrEqual(10);
		} finally {
			await server.stop();
		}
	});

	it("runs a sale open loop and its checks still hold", async () => {
		const json = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "lt-")), "out.json");
		const r = await node("loadtest.js", ["--users", "600", "--stock", "20", "--rate", "300", "--open-in", "1", "--json", json]);
		expect(r.code).toBe(0);
		const report = JSON.parse(fs.readFileSync(json, "utf8"));
		expect(report).toMatchObject({ loop: "open", rate: 300, requests: 600, errors: 0, timeouts: 0, db: { granted: 20, distinctBuyers: 20 }, fairness: { ok: true } });
		// 600 claims at 300/s take two seconds however fast the store answers.
		expect(report.seconds).toBeGreaterThan(1.9);
		expect(r.stdout).toMatch(/loop\s+open, 300 claims\/s scheduled/);
	});
});

describe("npm run bench -- --quick", () => {
	it("runs every step at small size and writes the results, the JSON and the chart", async () => {
		const out = fs.mkdtempSync(path.join(os.tmpdir(), "bench-"));
		const r = await node("run.js", ["--quick", "--out", out]);
		expect(r.code).toBe(0);
		const results = JSON.parse(fs.readFileSync(path.join(out, "results.json"), "utf8"));
		expect(results.figures.map((f: { id: string }) => f.id)).toEqual(["bare-1", "naive-pg", "redis-lua", "store-soldout-1", "open-50", "open-80", "store-grants-1", "sale-1", "sale-2"]);
		for (const f of results.figures) expect(f.rps).toBeGreaterThan(0);
		const byId = Object.fromEntries(results.figures.map((f: { id: string }) => [f.id, f]));
		// Throughput from wrk, with the servers' CPU per answer and the generator's own CPU.
		for (const id of ["bare-1", "naive-pg", "redis-lua", "store-soldout-1", "store-grants-1"]) {
			expect(byId[id]).toMatchObject({ tool: "wrk", errors: 0 });
			expect(byId[id].cpuMsPer1000).toBeGreaterThan(0);
			expect(byId[id].generatorCpuMs).toBeGreaterThan(0);
		}
		expect(Object.keys(byId["store-soldout-1"].outcomes)).toEqual(["SOLD_OUT"]);
		// The usual builds grant every claim: no buyer repeats within a run.
		for (const id of ["naive-pg", "redis-lua"]) expect(Object.keys(byId[id].outcomes)).toEqual(["HTTP 2xx"]);
		expect(Object.keys(byId["store-grants-1"].outcomes)).toEqual(["GRANTED"]);
		// Open loop at 50% and 80% of the sold-out rate wrk measured.
		expect(byId["open-50"].rate).toBe(Math.max(1, Math.round(byId["store-soldout-1"].rps * 0.5)));
		expect(byId["open-80"].rate).toBe(Math.max(1, Math.round(byId["store-soldout-1"].rps * 0.8)));
		for (const id of ["open-50", "open-80"]) expect(byId[id]).toMatchObject({ tool: "open loop", errors: 0, timeouts: 0 });
		const md = fs.readFileSync(path.join(out, "RESULTS.md"), "utf8");
		expect(md).toMatch(/\| run \| tool \| requests \| req\/s \| × bare .* server CPU ms per 1,000 answers/);
		expect(md).toMatch(/At \d+ ms CPU per 1,000 answers, 100,000 claims\/s need \*\*[\d.]+ cores of `api`\*\*/);
		expect(md).toMatch(/## Projection: 100,000 claims per second/);
		expect(md).toContain("![requests/s and p99 per run](chart.svg)");
		expect(fs.readFileSync(path.join(out, "chart.svg"), "utf8")).toMatch(/^<svg /);
	});
});

describe("npm run bench:sweep -- --quick", () => {
	it("measures sold-out answers (beside the bare server), grants and the sales at each connection count, and writes the page, JSON and chart", async () => {
		const out = fs.mkdtempSync(path.join(os.tmpdir(), "sweep-"));
		const r = await node("sweep.js", ["--quick", "--out", out]);
		expect(r.code).toBe(0);
		const saved = JSON.parse(fs.readFileSync(path.join(out, "concurrency.json"), "utf8"));
		expect(saved.rows.map((x: { kind: string; connections: number }) => `${x.kind}@${x.connections}`)).toEqual(["bare@50", "sold-out@50", "bare@200", "sold-out@200", "grants@50", "grants@200"]);
		const label = (x: { kind: string; connections: number }) => `${x.kind}@${x.connections}`;
		for (const row of saved.rows) expect({ row: label(row), errors: row.errors, timeouts: row.timeouts }).toEqual({ row: label(row), errors: 0, timeouts: 0 });
		for (const row of saved.rows) expect(row.cpuUsPerAnswer).toBeGreaterThan(0);
		// Every claim of a grants row was a grant, and PostgreSQL holds them all.
		for (const row of saved.rows.filter((x: { kind: string }) => x.kind === "grants")) {
			expect({ row: label(row), non2xx: row.non2xx }).toEqual({ row: label(row), non2xx: 0 });
			expect(row.inDb).toBeGreaterThanOrEqual(Math.round(row.rps));
		}
		expect(saved.sales.map((x: { loop: string }) => x.loop.split(",")[0])).toEqual(["closed", "open"]);
		for (const sale of saved.sales) expect(sale).toMatchObject({ ok: true, errors: 0, timeouts: 0 });
		for (const sale of saved.sales) expect(sale.soldOutAfterMs).toBeGreaterThan(0);
		expect(fs.readFileSync(path.join(out, "CONCURRENCY.md"), "utf8")).toContain("![grants/s and p99 against connections](concurrency.svg)");
		expect(fs.readFileSync(path.join(out, "concurrency.svg"), "utf8")).toMatch(/^<svg /);
	}, 180_000);
});

describe("npm run bench -- --cluster --quick", () => {
	it("runs the sold-out row and a sale through HAProxy with 1 and 2 gateways, with each process's CPU and the projection", async () => {
		const out = fs.mkdtempSync(path.join(os.tmpdir(), "bench-cluster-"));
		const r = await node("run.js", ["--cluster", "--quick", "--out", out]);
		// Anything but 0 shows the tool's own words here.
		expect({ code: r.code, stderr: r.code === 0 ? "" : r.stderr.slice(-3000) }).toEqual({ code: 0, stderr: "" });
		const saved = JSON.parse(fs.readFileSync(path.join(out, "cluster.json"), "utf8"));
		expect(saved.steps.map((s: { gateways: number }) => s.gateways)).toEqual([1, 2]);
		for (const s of saved.steps) {
			expect(s.soldOut.rps).toBeGreaterThan(0);
			expect(s.soldOut.errors).toBe(0);
			expect(s.sale.ok).toBe(true);
			// Every process was measured: gateways, HAProxy, the worker, three NATS, PgBouncer.
			expect(s.soldOut.processes.map((p: { role: string }) => p.role).sort()).toEqual([...Array(s.gateways).fill("gateway"), "haproxy", "nats", "nats", "nats", "pgbouncer", "worker"].sort());
			expect(s.soldOut.processes.filter((p: { role: string }) => p.role === "gateway").every((p: { cpuMsPer1000: number }) => p.cpuMsPer1000 > 0)).toBe(true);
		}
		const md = fs.readFileSync(path.join(out, "CLUSTER.md"), "utf8");
		expect(md).toMatch(/## Projection: cores of each role for 100,000 claims per second/);
		expect(md).toMatch(/\| gateway \| \d+\.\d\d \| \d+\.\d\d \|/);
	}, 300_000);
});
