import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { Cluster, startCluster, waitAllUp } from "../ops/cluster/launcher";
import { runSale } from "./loadtest";
import { seedAdmin, seedBuyers } from "./lib/seed";
import { cpuMs, runWrk, tokensFile } from "./lib/wrk";

/**
 * npm run bench -- --cluster: the scale test by adding nodes (issue 21). The cluster of
 * `npm run cluster` (HAProxy, three NATS with a login, PgBouncer, M workers) with 1, 2 and 4
 * gateways; through HAProxy, the sold-out row with wrk and the 100,000-buyer sale with its checks.
 * For each process (each gateway, HAProxy, each worker, each NATS, PgBouncer) its CPU per 1,000
 * answers, and from those the cores of each role that 100,000 claims/s need. On two cores
 * throughput cannot grow with processes: CPU per answer carries the claim. Writes
 * bench/CLUSTER.md and bench/cluster.json (or, with --quick, the same under a temporary folder).
 */

const ADMIN_DB = process.env.BENCH_ADMIN_DB_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const say = (line: string) => process.stderr.write(`[bench --cluster] ${line}\n`);

interface ProcessCpu {
	role: "gateway" | "haproxy" | "worker" | "nats" | "pgbouncer";
	name: string;
	cpuMsPer1000: number;
}

interface Step {
	gateways: number;
	workers: number;
	soldOut: { rps: number; p50: number; p99: number; errors: number; processes: ProcessCpu[] };
	sale: { users: number; stock: number; rps: number; p99: number; ok: boolean; checks: string; processes: ProcessCpu[] };
}

function processesOf(c: Cluster): { role: ProcessCpu["role"]; name: string; pid: number }[] {
	return [
		...c.gateways.map(g => ({ role: "gateway" as const, name: g.name, pid: g.proc.pid! })),
		{ role: "haproxy" as const, name: "haproxy", pid: c.haproxy.proc.pid! },
		...c.workers.map(w => ({ role: "worker" as const, name: w.name, pid: w.proc.pid! })),
		...c.nats.map(n => ({ role: "nats" as const, name: n.name, pid: n.proc.pid! })),
		{ role: "pgbouncer" as const, name: "pgbouncer", pid: c.pgbouncer.proc.pid! },
	];
}

/** CPU each process spends during `work`, per 1,000 of the answers `work` returns a count of. */
async function measured<T extends { answers: number }>(c: Cluster, work: () => Promise<T>): Promise<{ result: T; processes: ProcessCpu[] }> {
	const procs = processesOf(c);
	const safe = (pid: number) => {
		try {
			return cpuMs(pid);
		} catch {
			return 0;
		}
	};
	const before = procs.map(p => safe(p.pid));
	const result = await work();
	const processes = procs.map((p, i) => ({ role: p.role, name: p.name, cpuMsPer1000: ((safe(p.pid) - before[i]) * 1000) / Math.max(1, result.answers) }));
	return { result, processes };
}

function perRole(processes: ProcessCpu[]): Record<string, number> {
	const out: Record<string, number> = {};
	for (const p of processes) out[p.role] = (out[p.role] ?? 0) + p.cpuMsPer1000;
	return out;
}

function markdown(steps: Step[], meta: Record<string, unknown>): string {
	const n = (v: number) => Math.round(v).toLocaleString("en");
	const f = (v: number) => v.toFixed(1);
	const lines = [
		"# The cluster, by adding gateways",
		"",
		`Made by \`npm run bench -- --cluster\` on ${meta.when} (${meta.cpus} cores, load average ${meta.loadBefore} before the run). Every process`,
		"on this machine's two cores, so throughput cannot grow with processes: CPU per 1,000 answers carries the claim.",
		"Through HAProxy: the sold-out row with wrk -t1 (10 s), and the sale with the load tool (closed loop, 1,000 connections).",
		"",
		"| gateways | workers | sold-out req/s | p50 ms | p99 ms | sale claims/s | sale p99 ms | sale checks |",
		"| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
		...steps.map(s => `| ${s.gateways} | ${s.workers} | ${n(s.soldOut.rps)} | ${f(s.soldOut.p50)} | ${f(s.soldOut.p99)} | ${n(s.sale.rps)} | ${f(s.sale.p99)} | ${s.sale.ok ? "all pass" : "FAIL: " + s.sale.checks} |`),
		"",
		"CPU ms per 1,000 answers, each process (sold-out row / sale):",
		"",
		"| gateways | process | sold-out | sale |",
		"| ---: | --- | ---: | ---: |",
		...steps.flatMap(s => s.soldOut.processes.map((p, i) => `| ${s.gateways} | ${p.name} | ${f(p.cpuMsPer1000)} | ${f(s.sale.processes[i]?.cpuMsPer1000 ?? 0)} |`)),
		"",
		"## Projection: cores of each role for 100,000 claims per second",
		"",
		"From the largest step's CPU per 1,000 answers (all of a role's processes together): cores = ms per 1,000 answers × 100,000 / 1,000,000.",
		"The sold-out mix is the 10:00 crowd after the first seconds; the sale mix includes the grants and every answer of a 100,000-buyer sale.",
		"",
		"| role | sold-out mix | sale mix |",
		"| --- | ---: | ---: |",
	];
	const last = steps[steps.length - 1];
	if (last) {
		const so = perRole(last.soldOut.processes);
		const sa = perRole(last.sale.processes);
		for (const role of ["gateway", "haproxy", "worker", "nats", "pgbouncer"]) lines.push(`| ${role} | ${((so[role] ?? 0) / 10).toFixed(2)} | ${((sa[role] ?? 0) / 10).toFixed(2)} |`);
	}
	lines.push("", "PostgreSQL is not in these figures (one server for every step); bench/CONCURRENCY.md measures what a grant costs it.", "");
	return lines.join("\n");
}

export async function benchCluster(o: { quick: boolean; out?: string }): Promise<void> {
	const sizes = o.quick ? [1, 2] : [1, 2, 4];
	const users = o.quick ? 2_000 : 100_000;
	const stock = o.quick ? 200 : 20_000;
	const seconds = o.quick ? 2 : 10;
	const out = o.out ?? (o.quick ? fs.mkdtempSync(path.join(os.tmpdir(), "bench-cluster-")) : path.join(__dirname, "..", "..", "bench"));
	const meta = { when: new Date().toISOString(), cpus: os.cpus().length, loadBefore: os.loadavg()[0].toFixed(2) };
	const steps: Step[] = [];
	for (const gateways of sizes) {
		const workers = 1;
		const dbName = `dopamine_bench_cluster_${Date.now()}_${randomBytes(3).toString("hex")}`;
		const u = new URL(ADMIN_DB);
		u.pathname = `/${dbName}`;
		const jwtSecret = randomBytes(32).toString("hex");
		const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-cluster-run-"));
		say(`${gateways} gateway(s), ${workers} worker: starting`);
		const cluster = await startCluster({ gateways, workers, runDir, port: 0, databaseUrl: u.toString(), storeEnv: { JWT_SECRET: jwtSecret, CLAIM_RATE_PER_SECOND: "1000", LOG_LEVEL: "warn" } });
		try {
			const buyers = await seedBuyers(cluster.databaseUrl, Math.max(users, o.quick ? 5_000 : 20_000), `bc${gateways}_`, jwtSecret);
			const admin = await seedAdmin(cluster.databaseUrl, `bc${gateways}_`, jwtSecret);
			const tokens = tokensFile(runDir, "buyers", buyers.map(b => b.token));
			// A product with nothing to sell: after the first claim, the gateways answer alone.
			const res = await fetch(`${cluster.shopUrl}/api/admin/products`, {
				method: "POST",
				headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
				body: JSON.stringify({ name: "Bench sold out", price: 1, stock: 0, saleAt: new Date(Date.now() - 1000).toISOString() }),
			});
			if (res.status !== 201) throw new Error(`product: ${res.status} ${await res.text()}`);
			const product = ((await res.json()) as { product: { id: string } }).product.id;
			const claimPath = `/api/products/${product}/slots`;
			await runWrk({ url: cluster.shopUrl, path: claimPath, tokensFile: tokens, connections: 100, seconds: 2, pids: [] });
			say(`${gateways} gateway(s): sold-out row`);
			const so = await measured(cluster, async () => {
				const r = await runWrk({ url: cluster.shopUrl, path: claimPath, tokensFile: tokens, connections: o.quick ? 200 : 1000, seconds, pids: [] });
				return { ...r, answers: r.requests };
			});
			// wrk's 1,000 connections can make a gateway miss HAProxy's health checks on two cores:
			// the sale starts once every gateway is back in the pool (a down one would be a 503 page).
			await waitAllUp(cluster.statsUrl, gateways, 60_000);
			say(`${gateways} gateway(s): the ${users.toLocaleString("en")}-buyer sale`);
			const sale = await measured(cluster, async () => {
				const rep = await runSale({ users, stock, products: 1, connections: o.quick ? 100 : 1000, targets: [cluster.shopUrl], databaseUrl: cluster.databaseUrl, jwtSecret, openInSeconds: 3, progress: false });
				return { ...rep, answers: rep.requests };
			});
			steps.push({
				gateways,
				workers,
				soldOut: { rps: so.result.rps, p50: so.result.latency.p50, p99: so.result.latency.p99, errors: so.result.errors, processes: so.processes },
				sale: { users, stock, rps: sale.result.rps, p99: sale.result.latency.p99, ok: sale.result.ok, checks: sale.result.checks.filter(c => !c.ok).map(c => c.name).join("; "), processes: sale.processes },
			});
		} finally {
			await cluster.stop();
			const c = new Client({ connectionString: ADMIN_DB });
			await c.connect();
			await c.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`).finally(() => c.end());
			fs.rmSync(runDir, { recursive: true, force: true });
		}
	}
	fs.writeFileSync(path.join(out, "cluster.json"), JSON.stringify({ meta, steps }, null, "\t") + "\n");
	fs.writeFileSync(path.join(out, "CLUSTER.md"), markdown(steps, meta));
	say(`wrote ${out}/CLUSTER.md`);
	process.stdout.write(markdown(steps, meta));
}
