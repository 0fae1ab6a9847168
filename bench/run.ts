import { ChildProcess, execSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Client } from "pg";
import Redis from "ioredis";
import { fire, LoadResult, Shot } from "./lib/load";
import { seedAdmin, seedBuyers, SeededBuyer } from "./lib/seed";
import { freePort, startStore, StoreProcesses, waitUntil } from "./lib/store";
import { runSale, SaleReport } from "./loadtest";

/**
 * npm run bench [-- --quick]: every figure in one run, on one machine, with one load generator.
 * Writes bench/RESULTS.md, bench/results.json and bench/chart.svg (or, with --quick, the same under
 * a temporary folder, so CI exercises every step without touching the committed results).
 */

interface Figure {
	id: string;
	label: string;
	requests: number;
	rps: number;
	p50: number;
	p99: number;
	max: number;
	errors: number;
	timeouts: number;
	outcomes: Record<string, number>;
	note?: string;
	peakMemoryMb?: number[] | null;
	ok?: boolean;
}

const ADMIN_DB = process.env.BENCH_ADMIN_DB_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const SERVERS = path.join(__dirname, "servers");

function say(line: string) {
	process.stderr.write(`[bench] ${line}\n`);
}

function figure(id: string, label: string, r: LoadResult, outcomes: Record<string, number>, note?: string): Figure {
	return { id, label, requests: r.requests, rps: r.rps, p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, errors: r.errors, timeouts: r.timeouts, outcomes, note };
}

function statusOutcomes(r: LoadResult): Record<string, number> {
	return Object.fromEntries(Object.entries(r.statuses).map(([k, v]) => [`HTTP ${k}`, v]));
}

async function withDatabase<T>(work: (url: string) => Promise<T>): Promise<T> {
	const name = `dopamine_bench_${Date.now()}_${randomBytes(3).toString("hex")}`;
	const admin = new Client({ connectionString: ADMIN_DB });
	await admin.connect();
	await admin.query(`CREATE DATABASE "${name}"`);
	const u = new URL(ADMIN_DB);
	u.pathname = `/${name}`;
	try {
		return await work(u.toString());
	} finally {
		await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => undefined);
		await admin.end();
	}
}

async function startServer(file: string, env: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
	const port = await freePort();
	const p: ChildProcess = spawn(process.execPath, [path.join(SERVERS, file)], { env: { PATH: process.env.PATH ?? "", ...env, PORT: String(port) }, stdio: ["ignore", "ignore", "inherit"] });
	const url = `http://127.0.0.1:${port}`;
	await waitUntil(`${file} to listen`, async () => (await fetch(url, { method: "POST" })).status > 0);
	return {
		url,
		stop: () =>
			new Promise<void>(resolve => {
				if (p.exitCode !== null) return resolve();
				p.once("exit", () => resolve());
				p.kill("SIGTERM");
			}),
	};
}

const plain = (n: number, url = 0): Shot[] => Array.from({ length: n }, (_, i) => ({ target: url, method: "POST", path: "/claim", headers: { "x-buyer": String(i + 1) } }));

async function bare(n: number, workers: number, connections: number): Promise<Figure> {
	const s = await startServer("bare.js", { WORKERS: String(workers) });
	try {
		await fire(plain(Math.min(2000, n)), { targets: [s.url], connections }); // warm-up
		const r = await fire(plain(n), { targets: [s.url], connections });
		return figure(`bare-${workers}`, `bare Node http, ${workers} process${workers > 1 ? "es (node:cluster)" : ""}`, r, statusOutcomes(r));
	} finally {
		await s.stop();
	}
}

async function naivePg(n: number, connections: number): Promise<Figure> {
	return withDatabase(async url => {
		const c = new Client({ connectionString: url });
		await c.connect();
		await c.query(`CREATE TABLE naive_stock (id int PRIMARY KEY, remaining int NOT NULL)`);
		await c.query(`CREATE TABLE naive_orders (id bigserial PRIMARY KEY, buyer text NOT NULL, at timestamptz DEFAULT now())`);
		await c.query(`INSERT INTO naive_stock VALUES (1, $1)`, [n]);
		await c.end();
		const s = await startServer("naive-pg.js", { DATABASE_URL: url });
		try {
			const r = await fire(plain(n), { targets: [s.url], connections });
			return figure("naive-pg", "usual build (a): conditional UPDATE + INSERT per claim, PostgreSQL", r, statusOutcomes(r), "every claim a grant: one hot row");
		} finally {
			await s.stop();
		}
	});
}

async function redisLua(n: number, connections: number): Promise<Figure> {
	const key = `bench:${randomBytes(3).toString("hex")}`;
	const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
	await redis.set(`${key}:stock`, n);
	const s = await startServer("redis-lua.js", { BENCH_KEY: key });
	try {
		const r = await fire(plain(n), { targets: [s.url], connections });
		return figure("redis-lua", "usual build (b): Redis Lua decrement (nothing durable)", r, statusOutcomes(r), "fast, but a Redis restart loses every grant and no order row exists");
	} finally {
		await s.stop();
		await redis.del(`${key}:stock`, `${key}:buyers`);
		redis.disconnect();
	}
}

interface StoreRig {
	store: StoreProcesses;
	buyers: SeededBuyer[];
	admin: string;
	databaseUrl: string;
}

async function withStore<T>(apiProcesses: number, buyers: number, work: (rig: StoreRig) => Promise<T>): Promise<T> {
	return withDatabase(async databaseUrl => {
		const jwtSecret = randomBytes(32).toString("hex");
		const store = await startStore({ apiProcesses, databaseUrl, jwtSecret });
		try {
			const seeded = await seedBuyers(databaseUrl, buyers, "b", jwtSecret);
			const admin = await seedAdmin(databaseUrl, "b", jwtSecret);
			return await work({ store, buyers: seeded, admin, databaseUrl });
		} finally {
			await store.stop();
		}
	});
}

async function createProduct(rig: StoreRig, stock: number): Promise<string> {
	const res = await fetch(`${rig.store.targets[0]}/api/admin/products`, {
		method: "POST",
		headers: { authorization: `Bearer ${rig.admin}`, "content-type": "application/json" },
		body: JSON.stringify({ name: "Bench drop", price: 1000, stock, saleAt: new Date(Date.now() - 1000).toISOString() }),
	});
	if (res.status !== 201) throw new Error(`product: ${res.status} ${await res.text()}`);
	return ((await res.json()) as { product: { id: string } }).product.id;
}

function claimShots(rig: StoreRig, product: string, n: number): Shot[] {
	return Array.from({ length: n }, (_, i) => ({
		target: i % rig.store.targets.length,
		method: "POST",
		path: `/api/products/${product}/slots`,
		headers: { authorization: `Bearer ${rig.buyers[i % rig.buyers.length].token}` },
	}));
}

async function claimRun(rig: StoreRig, product: string, n: number, connections: number): Promise<{ r: LoadResult; outcomes: Record<string, number> }> {
	const outcomes: Record<string, number> = {};
	const r = await fire(claimShots(rig, product, n), {
		targets: rig.store.targets,
		connections,
		keepBodies: true,
		onHit: (_i, hit) => {
			let type = `HTTP ${hit.status}`;
			if (hit.status === 201) type = "GRANTED";
			else {
				const m = /"type":"([A-Z_]+)"/.exec(hit.body);
				if (m) type = m[1];
			}
			outcomes[type] = (outcomes[type] ?? 0) + 1;
		},
	});
	return { r, outcomes };
}

async function storeSoldOut(apiProcesses: number, n: number, connections: number): Promise<Figure> {
	return withStore(apiProcesses, Math.min(n, 20_000), async rig => {
		const product = await createProduct(rig, 0);
		// The first claims reach the actor, which broadcasts the flag; then the gateways answer alone.
		await claimRun(rig, product, Math.min(2000, n), connections);
		const { r, outcomes } = await claimRun(rig, product, n, connections);
		const f = figure(`store-soldout-${apiProcesses}`, `store, sold-out answer, ${apiProcesses} api process${apiProcesses > 1 ? "es over NATS" : ""}`, r, outcomes);
		f.peakMemoryMb = rig.store.peakMemoryMb();
		return f;
	});
}

async function storeGrants(apiProcesses: number, n: number, connections: number): Promise<Figure> {
	return withStore(apiProcesses, n, async rig => {
		const warm = await createProduct(rig, 200);
		await claimRun(rig, warm, 200, connections);
		const product = await createProduct(rig, n);
		const { r, outcomes } = await claimRun(rig, product, n, connections);
		const f = figure(
			`store-grants-${apiProcesses}`,
			apiProcesses > 1 ? `store, grants, claims through an api-only process over NATS` : "store, grants, single process",
			r,
			outcomes,
			"every claim a committed grant"
		);
		if (apiProcesses > 1) f.label = "store, grants over NATS (2 api processes, allocator on one)";
		f.peakMemoryMb = rig.store.peakMemoryMb();
		return f;
	});
}

async function storeSale(apiProcesses: number, users: number, stock: number, connections: number): Promise<Figure> {
	const rep: SaleReport = await runSale({ users, stock, products: 1, connections, apiProcesses, openInSeconds: 2, progress: false });
	const f: Figure = {
		id: `sale-${apiProcesses}`,
		label: `store, ${users.toLocaleString("en")} buyers / ${stock.toLocaleString("en")} stock sale, ${apiProcesses} api process${apiProcesses > 1 ? "es over NATS" : ""}`,
		requests: rep.requests,
		rps: rep.rps,
		p50: rep.latency.p50,
		p99: rep.latency.p99,
		max: rep.latency.max,
		errors: rep.errors,
		timeouts: rep.timeouts,
		outcomes: rep.outcomes,
		peakMemoryMb: rep.peakMemoryMb,
		ok: rep.ok,
		note: rep.checks.map(c => `${c.ok ? "ok" : "FAIL"}: ${c.name}`).join("; "),
	};
	return f;
}

function versions(): Record<string, string> {
	const pkg = (name: string) => {
		try {
			// Read the file itself: some packages' "exports" hide package.json from require().
			const file = path.join(__dirname, "..", "..", "node_modules", name, "package.json");
			return JSON.parse(fs.readFileSync(file, "utf8")).version as string;
		} catch {
			return "?";
		}
	};
	const cmd = (c: string) => {
		try {
			return execSync(c, { stdio: ["ignore", "pipe", "ignore"] }).toString().trim().split("\n")[0];
		} catch {
			return "?";
		}
	};
	return {
		node: process.version,
		moleculer: pkg("moleculer"),
		"moleculer-web": pkg("moleculer-web"),
		nats: pkg("nats"),
		pg: pkg("pg"),
		typeorm: pkg("typeorm"),
		postgresql: cmd("psql -h 127.0.0.1 -U postgres -Atc 'SHOW server_version' postgres"),
		redis: cmd("redis-server --version"),
		"nats-server": cmd("nats-server --version"),
	};
}

function chart(figs: Figure[]): string {
	const w = 900;
	const rowH = 34;
	const left = 380;
	const maxRps = Math.max(...figs.map(f => f.rps));
	const maxP99 = Math.max(...figs.map(f => f.p99), 1);
	const h = 60 + figs.length * rowH + 30;
	const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
	const rows = figs
		.map((f, i) => {
			const y = 50 + i * rowH;
			const bw = Math.max(1, ((w - left - 150) * f.rps) / maxRps);
			const pw = Math.max(1, ((w - left - 150) * f.p99) / maxP99);
			return [
				`<text x="${left - 8}" y="${y + 12}" text-anchor="end" font-size="12">${esc(f.label.length > 58 ? f.label.slice(0, 57) + "…" : f.label)}</text>`,
				`<rect x="${left}" y="${y}" width="${bw.toFixed(1)}" height="14" fill="#3b82f6"/>`,
				`<text x="${left + bw + 6}" y="${y + 12}" font-size="11">${Math.round(f.rps).toLocaleString("en")} req/s</text>`,
				`<rect x="${left}" y="${y + 16}" width="${pw.toFixed(1)}" height="8" fill="#f97316"/>`,
				`<text x="${left + pw + 6}" y="${y + 24}" font-size="10" fill="#9a3412">p99 ${f.p99.toFixed(1)} ms</text>`,
			].join("");
		})
		.join("\n");
	return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="26" font-size="16" font-weight="bold">Dopamine Store benchmark: requests/s (blue) and p99 latency (orange), same run</text>
${rows}
</svg>
`;
}

interface Target {
	name: string;
	ok: boolean;
	detail: string;
}

function targets(f: Record<string, Figure>): Target[] {
	const ratio = (a: string, b: string) => (f[a] && f[b] ? f[a].rps / f[b].rps : NaN);
	const out: Target[] = [];
	const soldOut = ratio("store-soldout-1", "bare-1");
	out.push({ name: "sold-out answers ≥ 0.6× bare", ok: soldOut >= 0.6, detail: `${soldOut.toFixed(2)}×` });
	const grants = ratio("store-grants-1", "bare-1");
	out.push({ name: "grants, single process ≥ 0.25× bare", ok: grants >= 0.25, detail: `${grants.toFixed(2)}×` });
	const vsNaive = ratio("store-grants-1", "naive-pg");
	out.push({ name: "grants ≥ 5× the conditional-UPDATE build", ok: vsNaive >= 5, detail: `${vsNaive.toFixed(1)}×` });
	const nats = ratio("store-grants-2", "bare-1");
	out.push({ name: "grants over NATS (reported)", ok: true, detail: `${nats.toFixed(2)}× bare` });
	for (const id of ["sale-1", "sale-2"]) {
		const s = f[id];
		if (!s) continue;
		const busy = s.outcomes.BUSY ?? 0;
		const answered = Object.values(s.outcomes).reduce((a, b) => a + b, 0);
		out.push({
			name: `${id}: every buyer answered, no error/timeout/BUSY, p99 < 1 s, checks pass`,
			ok: answered === s.requests && s.errors === 0 && s.timeouts === 0 && busy === 0 && s.p99 < 1000 && s.ok === true,
			detail: `answered ${answered}/${s.requests}, errors ${s.errors}, timeouts ${s.timeouts}, BUSY ${busy}, p99 ${s.p99.toFixed(0)} ms, ${s.ok ? "checks ok" : "checks FAILED"}`,
		});
		const mem = Math.max(...(s.peakMemoryMb ?? [0]));
		out.push({ name: `${id}: peak memory per store process < 400 MB`, ok: mem > 0 && mem < 400, detail: `${mem.toFixed(0)} MB` });
	}
	const bareScale = ratio("bare-2", "bare-1");
	const storeScale = ratio("store-soldout-2", "store-soldout-1");
	out.push({
		name: "1 → 2 api processes scales ≥ 0.8 as well as bare does",
		ok: storeScale / bareScale >= 0.8,
		detail: `store ×${storeScale.toFixed(2)}, bare ×${bareScale.toFixed(2)}: ${(storeScale / bareScale).toFixed(2)}`,
	});
	return out;
}

function projection(f: Record<string, Figure>): string {
	const perProcess = f["store-soldout-1"]?.rps ?? 0;
	const twoProc = f["store-soldout-2"]?.rps ?? 0;
	const perNode = Math.max(twoProc, perProcess);
	const nodes = perNode > 0 ? Math.ceil((100_000 / perNode) * 1.3) : NaN;
	return [
		"## Projection: 100,000 claims per second",
		"",
		`At 10:00:00 all but stock-many claims are sold-out (or not-open) answers given by the gateways from memory, so`,
		`the gateway tier sets the rate. Measured here: ${Math.round(perProcess).toLocaleString("en")} claims/s from one api process`,
		`(about one core: the load generator had the other), ${Math.round(twoProc).toLocaleString("en")} claims/s from two api processes on this 2-core machine`,
		`with the generator competing for the same cores. Taking ${Math.round(perNode).toLocaleString("en")} claims/s per 2-core node and 30% headroom,`,
		`**100,000 claims/s needs about ${nodes} api nodes of 2 cores** (≈ ${Math.ceil((100_000 / Math.max(1, perProcess)) * 1.3)} cores at the per-process rate),`,
		`behind a load balancer, plus one or two allocator nodes: the grant path only carries stock-many claims per product,`,
		`and one allocator process committed ${Math.round(f["store-grants-1"]?.rps ?? 0).toLocaleString("en")} grants/s here.`,
		"",
	].join("\n");
}

function markdown(figs: Figure[], tgt: Target[], meta: Record<string, unknown>, f: Record<string, Figure>): string {
	const bareRps = f["bare-1"]?.rps ?? NaN;
	const lines = [
		"# Benchmark results",
		"",
		`Measured ${meta.date} by \`npm run bench\` on ${meta.machine}. One load generator (bench/lib/load.ts, closed loop,`,
		`${meta.connections} connections, on the same machine as the servers) for every run; ratios are to the bare server`,
		"measured in the same run, since this machine's absolute speed drifts.",
		"",
		`Versions: ${Object.entries(meta.versions as Record<string, string>).map(([k, v]) => `${k} ${v}`).join(", ")}.`,
		"",
		"![requests/s and p99 per run](chart.svg)",
		"",
		"| run | requests | req/s | × bare | p50 ms | p99 ms | max ms | answers | errors | timeouts | peak MB |",
		"| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
		...figs.map(
			x =>
				`| ${x.label} | ${x.requests} | ${Math.round(x.rps)} | ${(x.rps / bareRps).toFixed(2)} | ${x.p50.toFixed(1)} | ${x.p99.toFixed(1)} | ${x.max.toFixed(1)} | ${Object.entries(x.outcomes)
					.map(([k, v]) => `${k} ${v}`)
					.join(", ")} | ${x.errors} | ${x.timeouts} | ${x.peakMemoryMb ? x.peakMemoryMb.map(m => m.toFixed(0)).join(" / ") : ""} |`
		),
		"",
		"Notes: " + figs.filter(x => x.note).map(x => `*${x.label}*: ${x.note}.`).join(" "),
		"",
		"## Targets",
		"",
		"| target | met | measured |",
		"| --- | --- | --- |",
		...tgt.map(t => `| ${t.name} | ${t.ok ? "yes" : "**no**"} | ${t.detail} |`),
		"",
		String(meta.profileNotes ?? ""),
		projection(f),
	];
	return lines.join("\n");
}

async function main() {
	const { values } = parseArgs({
		options: { quick: { type: "boolean", default: false }, out: { type: "string" }, connections: { type: "string", default: "100" }, render: { type: "boolean", default: false } },
	});
	if (values.render) {
		// Re-render RESULTS.md and the chart from results.json (after editing PROFILE.md), measuring nothing.
		const dir = values.out ?? path.join(__dirname, "..", "..", "bench");
		const saved = JSON.parse(fs.readFileSync(path.join(dir, "results.json"), "utf8"));
		const profileFile = path.join(__dirname, "..", "..", "bench", "PROFILE.md");
		saved.meta.profileNotes = fs.existsSync(profileFile) ? fs.readFileSync(profileFile, "utf8") : "";
		const byId = Object.fromEntries((saved.figures as Figure[]).map(x => [x.id, x]));
		fs.writeFileSync(path.join(dir, "chart.svg"), chart(saved.figures));
		fs.writeFileSync(path.join(dir, "RESULTS.md"), markdown(saved.figures, saved.targets, saved.meta, byId));
		return;
	}
	const quick = values.quick;
	const connections = Number(values.connections);
	const size = quick
		? { bare: 3000, naive: 300, redis: 2000, soldOut: 2000, grants: 500, saleUsers: 2000, saleStock: 50 }
		: { bare: 200_000, naive: 10_000, redis: 100_000, soldOut: 100_000, grants: 20_000, saleUsers: 100_000, saleStock: 1_000 };
	const outDir = values.out ?? (quick ? fs.mkdtempSync(path.join(os.tmpdir(), "dopamine-bench-")) : path.join(__dirname, "..", "..", "bench"));
	const figs: Figure[] = [];
	const step = async (name: string, run: () => Promise<Figure>) => {
		say(`${name}...`);
		const x = await run();
		say(`${name}: ${Math.round(x.rps)} req/s, p50 ${x.p50.toFixed(1)} ms, p99 ${x.p99.toFixed(1)} ms, ${JSON.stringify(x.outcomes)}`);
		figs.push(x);
	};
	await step("bare, 1 process", () => bare(size.bare, 1, connections));
	await step("bare, 2 processes", () => bare(size.bare, 2, connections));
	await step("conditional UPDATE on PostgreSQL", () => naivePg(size.naive, connections));
	await step("Redis Lua", () => redisLua(size.redis, connections));
	await step("store sold-out, 1 api process", () => storeSoldOut(1, size.soldOut, connections));
	await step("store sold-out, 2 api processes", () => storeSoldOut(2, size.soldOut, connections));
	await step("store grants, single process", () => storeGrants(1, size.grants, connections));
	await step("store grants over NATS", () => storeGrants(2, size.grants, connections));
	await step("sale, 1 api process", () => storeSale(1, size.saleUsers, size.saleStock, connections));
	await step("sale, 2 api processes", () => storeSale(2, size.saleUsers, size.saleStock, connections));

	const byId = Object.fromEntries(figs.map(x => [x.id, x]));
	const tgt = targets(byId);
	const profileFile = path.join(__dirname, "..", "..", "bench", "PROFILE.md");
	const meta = {
		date: new Date().toISOString(),
		machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}`,
		connections,
		quick,
		versions: versions(),
		profileNotes: fs.existsSync(profileFile) ? fs.readFileSync(profileFile, "utf8") : "",
	};
	fs.mkdirSync(outDir, { recursive: true });
	fs.writeFileSync(path.join(outDir, "results.json"), JSON.stringify({ meta, figures: figs, targets: tgt }, null, 2));
	fs.writeFileSync(path.join(outDir, "chart.svg"), chart(figs));
	fs.writeFileSync(path.join(outDir, "RESULTS.md"), markdown(figs, tgt, meta, byId));
	say(`wrote ${path.join(outDir, "RESULTS.md")}`);
	for (const t of tgt) say(`${t.ok ? "met " : "MISSED"}  ${t.name}: ${t.detail}`);
	// Sizes in --quick are too small for the figures to mean anything; only the sales' checks must hold.
	const salesOk = figs.filter(x => x.id.startsWith("sale-")).every(x => x.ok);
	process.exitCode = salesOk ? 0 : 1;
}

if (require.main === module)
	main().catch(err => {
		console.error(`bench: ${err?.stack ?? err}`);
		process.exitCode = 2;
	});
