import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Client } from "pg";
import { runSale } from "./loadtest";
import { CLAIM_PATH, createProduct, granted, readyForSale, soldOutRun, standInTokens, startServer, withStore, wrkRun } from "./run";
import { WrkResult } from "./lib/wrk";

/**
 * npm run bench:sweep: the store at the crowd's concurrency (issue 20), one store process, from
 * outside with wrk, on this machine.
 *
 * - Sold-out answers at 100, 1,000 and 5,000 connections, in turns with a bare Node http server
 *   (three runs of each, medians), CPU µs per answer from /proc.
 * - Grants on one product at the same connection counts: each row a fresh product with a unit for
 *   every seeded buyer, so every claim is a grant.
 * - The 100,000-buyer sales (stocks 1,000, 20,000 and 100,000) at 1,000 connections with the load
 *   tool's checks, and how long after the opening the last unit went (from PostgreSQL).
 *
 * Writes bench/CONCURRENCY.md, bench/concurrency.json and bench/concurrency.svg (grants/s and p99
 * against connections). `--quick` shrinks everything to check the steps.
 */

interface Row {
	kind: "bare" | "sold-out" | "grants";
	connections: number;
	rps: number;
	p50: number;
	p99: number;
	errors: number;
	timeouts: number;
	non2xx: number;
	cpuUsPerAnswer: number;
	generatorSaturated: boolean;
	runs?: number[];
	inDb?: number;
}

interface SaleRow {
	users: number;
	stock: number;
	loop: string;
	connections: number;
	rps: number;
	p50: number;
	p99: number;
	outcomes: Record<string, number>;
	errors: number;
	timeouts: number;
	soldOutAfterMs: number | null;
	ok: boolean;
	checks: string;
}

const say = (line: string) => process.stderr.write(`[sweep] ${line}\n`);
const median = (runs: WrkResult[]) => [...runs].sort((a, b) => a.rps - b.rps)[Math.floor((runs.length - 1) / 2)];

function row(kind: Row["kind"], connections: number, r: WrkResult, runs?: WrkResult[]): Row {
	const cpu = r.serverCpuMs.reduce((a, b) => a + b, 0);
	return {
		kind,
		connections,
		rps: Math.round(r.rps),
		p50: r.latency.p50,
		p99: r.latency.p99,
		errors: r.errors,
		timeouts: r.timeouts,
		non2xx: r.non2xx,
		cpuUsPerAnswer: Math.round((cpu * 1000) / Math.max(1, r.requests)),
		generatorSaturated: r.generatorSaturated,
		...(runs ? { runs: runs.map(x => Math.round(x.rps)) } : {}),
	};
}

async function soldOutAfterMs(databaseUrl: string, productId: string): Promise<number | null> {
	const c = new Client({ connectionString: databaseUrl });
	await c.connect();
	try {
		const { rows } = await c.query(
			`SELECT extract(epoch FROM max(s.held_at) - p.sale_at) * 1000 AS ms, count(*) FILTER (WHERE s.status = 'AVAILABLE') AS free
			 FROM products p JOIN slots s ON s.product_id = p.id WHERE p.id = $1 GROUP BY p.sale_at`,
			[productId]
		);
		return rows[0] && Number(rows[0].free) === 0 ? Math.round(Number(rows[0].ms)) : null;
	} finally {
		await c.end();
	}
}

function chart(rows: Row[]): string {
	const g = rows.filter(r => r.kind === "grants");
	const W = 640, H = 320, L = 60, B = 40;
	const xs = g.map((_, i) => L + 40 + (i * (W - L - 80)) / Math.max(1, g.length - 1));
	const maxR = Math.max(1, ...g.map(r => r.rps)) * 1.15;
	const maxP = Math.max(1, ...g.map(r => r.p99)) * 1.15;
	const y = (v: number, max: number) => H - B - (v / max) * (H - B - 20);
	const line = (vals: number[], max: number) => vals.map((v, i) => `${i ? "L" : "M"}${xs[i].toFixed(1)},${y(v, max).toFixed(1)}`).join(" ");
	return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<title>Grants per second and p99 against connections, one product, one store process</title>
<rect width="100%" height="100%" fill="#fff"/>
<line x1="${L}" y1="${H - B}" x2="${W - 20}" y2="${H - B}" stroke="#333"/>
<path d="${line(g.map(r => r.rps), maxR)}" stroke="#1565c0" stroke-width="2" fill="none"/>
<path d="${line(g.map(r => r.p99), maxP)}" stroke="#c62828" stroke-width="2" fill="none" stroke-dasharray="5,3"/>
${g.map((r, i) => `<circle cx="${xs[i]}" cy="${y(r.rps, maxR)}" r="3" fill="#1565c0"/><text x="${xs[i]}" y="${y(r.rps, maxR) - 8}" text-anchor="middle" fill="#1565c0">${r.rps.toLocaleString("en")}/s</text>
<circle cx="${xs[i]}" cy="${y(r.p99, maxP)}" r="3" fill="#c62828"/><text x="${xs[i]}" y="${y(r.p99, maxP) + 16}" text-anchor="middle" fill="#c62828">p99 ${Math.round(r.p99)} ms</text>
<text x="${xs[i]}" y="${H - B + 16}" text-anchor="middle">${r.connections.toLocaleString("en")}</text>`).join("\n")}
<text x="${W / 2}" y="${H - 6}" text-anchor="middle">connections (wrk)</text>
<text x="${L}" y="14" fill="#1565c0">grants/s (solid)</text><text x="${W - 20}" y="14" text-anchor="end" fill="#c62828">p99 ms (dashed)</text>
</svg>
`;
}

function markdown(rows: Row[], sales: SaleRow[], meta: Record<string, unknown>): string {
	const n = (v: number) => Math.round(v).toLocaleString("en");
	const bare = new Map(rows.filter(r => r.kind === "bare").map(r => [r.connections, r]));
	const lines = [
		"# The store at the crowd's concurrency",
		"",
		`Made by \`npm run bench:sweep\` on ${meta.when} (${meta.cpus} cores, load average ${meta.loadBefore} before the run). One store process;`,
		"wrk -t1 from outside, 10 s per run; CPU from /proc. Sold-out and bare rows: three runs each, in turns, medians.",
		"",
		"| row | connections | req/s | × bare | p50 ms | p99 ms | CPU µs per answer | × bare CPU | errors / timeouts | wrk saturated |",
		"| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
		...rows.map(r => {
			const b = bare.get(r.connections);
			const x = b && r.kind !== "bare" ? (r.rps / b.rps).toFixed(2) : r.kind === "bare" ? "1" : "";
			const xc = b && r.kind !== "bare" ? (r.cpuUsPerAnswer / b.cpuUsPerAnswer).toFixed(2) : r.kind === "bare" ? "1" : "";
			const label = r.kind === "bare" ? "bare Node http, fixed 409" : r.kind === "sold-out" ? "store, sold-out answer" : "store, every claim a grant";
			return `| ${label}${r.runs ? ` (runs: ${r.runs.map(n).join(" / ")})` : ""} | ${n(r.connections)} | ${n(r.rps)} | ${x} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.cpuUsPerAnswer} | ${xc} | ${r.errors} / ${r.timeouts} | ${r.generatorSaturated ? "yes" : "no"} |`;
		}),
		"",
		"![grants/s and p99 against connections](concurrency.svg)",
		"",
		"## The 100,000-buyer sales",
		"",
		"| buyers | stock | connections | loop | claims/s | p50 ms | p99 ms | sold out after the opening | outcomes | errors / timeouts | checks |",
		"| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
		...sales.map(
			s =>
				`| ${n(s.users)} | ${n(s.stock)} | ${n(s.connections)} | ${s.loop} | ${n(s.rps)} | ${s.p50.toFixed(1)} | ${s.p99.toFixed(1)} | ${s.soldOutAfterMs === null ? "not sold out" : `${(s.soldOutAfterMs / 1000).toFixed(2)} s`} | ${Object.entries(s.outcomes).map(([k, v]) => `${k} ${n(v)}`).join(", ")} | ${s.errors} / ${s.timeouts} | ${s.ok ? "all pass" : "FAIL: " + s.checks} |`
		),
		"",
	];
	return lines.join("\n");
}

async function main() {
	const { values } = parseArgs({
		options: {
			connections: { type: "string", default: "100,1000,5000" },
			seconds: { type: "string", default: "10" },
			buyers: { type: "string", default: "120000" },
			stocks: { type: "string", default: "1000,20000,100000" },
			users: { type: "string", default: "100000" },
			rounds: { type: "string", default: "3" },
			quick: { type: "boolean", default: false },
			/** Only some parts: any of soldout, grants, sales (comma list). */
			only: { type: "string", default: "soldout,grants,sales" },
			/** Re-render CONCURRENCY.md and the chart from concurrency.json (after editing the notes), measuring nothing. */
			render: { type: "boolean", default: false },
			out: { type: "string" },
		},
	});
	const notesFile = path.join(__dirname, "..", "..", "bench", "CONCURRENCY-NOTES.md");
	const notes = () => (fs.existsSync(notesFile) ? "\n" + fs.readFileSync(notesFile, "utf8") : "");
	if (values.render) {
		const dir = values.out ?? path.join(__dirname, "..", "..", "bench");
		const saved = JSON.parse(fs.readFileSync(path.join(dir, "concurrency.json"), "utf8"));
		fs.writeFileSync(path.join(dir, "concurrency.svg"), chart(saved.rows));
		fs.writeFileSync(path.join(dir, "CONCURRENCY.md"), markdown(saved.rows, saved.sales, saved.meta) + notes());
		return;
	}
	const quick = values.quick;
	const conns = (quick ? "50,200" : values.connections!).split(",").map(Number);
	const seconds = quick ? 2 : Number(values.seconds);
	const rounds = quick ? 1 : Number(values.rounds);
	const buyers = quick ? 20_000 : Number(values.buyers);
	const users = quick ? 2000 : Number(values.users);
	const stocks = (quick ? "200" : values.stocks!).split(",").map(Number);
	const out = values.out ?? (quick ? fs.mkdtempSync(path.join(os.tmpdir(), "sweep-out-")) : path.join(__dirname, "..", "..", "bench"));
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sweep-"));
	const meta = { when: new Date().toISOString(), cpus: os.cpus().length, loadBefore: os.loadavg()[0].toFixed(2) };
	const rows: Row[] = [];
	const sales: SaleRow[] = [];
	const parts = new Set(values.only!.split(","));
	const sz = { seconds, warmSeconds: Math.min(2, seconds), buyers, openSeconds: 0, standIn: 0, saleUsers: 0, saleStock: 0, rounds };

	await withStore(buyers, dir, async rig => {
		const url = rig.store.targets[0];
		for (const c of parts.has("soldout") ? conns : []) {
			say(`sold-out and bare at ${c} connections`);
			const bareServer = await startServer("bare.js", {});
			const bareRuns: WrkResult[] = [];
			try {
				const standIn = standInTokens(dir, 50_000);
				await wrkRun(bareServer.url, CLAIM_PATH("1"), standIn, [bareServer.pid], sz.warmSeconds, c);
				const { runs } = await soldOutRun(rig, sz, c, async () => {
					bareRuns.push(await wrkRun(bareServer.url, CLAIM_PATH("1"), standIn, [bareServer.pid], seconds, c));
				});
				rows.push(row("bare", c, median(bareRuns), bareRuns), row("sold-out", c, median(runs), runs));
			} finally {
				await bareServer.stop();
			}
		}
		for (const c of parts.has("grants") ? conns : []) {
			say(`grants at ${c} connections`);
			const product = await createProduct(rig, rig.buyers.length);
			await readyForSale(rig, product);
			const g = await wrkRun(url, CLAIM_PATH(product), rig.tokens, rig.store.pids, seconds, c);
			await new Promise(res => setTimeout(res, 1000));
			rows.push({ ...row("grants", c, g), inDb: await granted(rig.databaseUrl, product) });
		}
	});
	// Closed loop at 1,000 connections for each stock; then the 20,000-unit sale (or the middle
	// stock) in the open loop at the rate the closed loop reached: the machine's capacity.
	const saleRuns: { stock: number; rate?: number }[] = stocks.map(stock => ({ stock }));
	if (parts.has("sales")) saleRuns.push({ stock: stocks[Math.floor(stocks.length / 2)], rate: -1 });
	for (const run of parts.has("sales") ? saleRuns : []) {
		const stock = run.stock;
		const rate = run.rate === -1 ? Math.max(100, Math.round(sales.find(x => x.stock === stock)?.rps ?? 1000)) : undefined;
		say(`sale: ${users} buyers, ${stock} units, 1,000 connections${rate ? `, open loop at ${rate}/s` : ""}`);
		const rep = await runSale({ users, stock, products: 1, connections: quick ? 100 : 1000, openInSeconds: 3, progress: false, keepDb: true, rate });
		const dbUrl = new URL(process.env.LOADTEST_ADMIN_DB_URL ?? "postgres://postgres@127.0.0.1:5432/postgres");
		dbUrl.pathname = `/${rep.database.split("/").pop()}`;
		const soldOut = await soldOutAfterMs(dbUrl.toString(), rep.productId).catch(() => null);
		const admin = new Client({ connectionString: process.env.LOADTEST_ADMIN_DB_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" });
		await admin.connect();
		await admin.query(`DROP DATABASE IF EXISTS "${dbUrl.pathname.slice(1)}" WITH (FORCE)`).finally(() => admin.end());
		sales.push({
			users,
			stock,
			loop: rate ? `open, ${rate}/s (${rep.lateSends} sent > 5 ms late)` : "closed",
			connections: quick ? 100 : 1000,
			rps: rep.rps,
			p50: rep.latency.p50,
			p99: rep.latency.p99,
			outcomes: rep.outcomes,
			errors: rep.errors,
			timeouts: rep.timeouts,
			soldOutAfterMs: soldOut,
			ok: rep.ok,
			checks: rep.checks.filter(x => !x.ok).map(x => x.name).join("; "),
		});
	}
	fs.writeFileSync(path.join(out, "concurrency.json"), JSON.stringify({ meta, rows, sales }, null, "\t") + "\n");
	fs.writeFileSync(path.join(out, "concurrency.svg"), chart(rows));
	fs.writeFileSync(path.join(out, "CONCURRENCY.md"), markdown(rows, sales, meta) + notes());
	say(`wrote ${out}/CONCURRENCY.md`);
	process.stdout.write(markdown(rows, sales, meta));
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
