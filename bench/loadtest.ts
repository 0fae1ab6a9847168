import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { parseArgs } from "node:util";
import { Client } from "pg";
import { checkOrder, observe, ObservedAnswer } from "../lib/order-check";
import { fire, fireOpen, LoadOptions, LoadResult, OpenLoopResult, Shot } from "./lib/load";
import { productCounts, seedAdmin, seedBuyers } from "./lib/seed";
import { postWhenAvailable, startStore, StoreProcesses } from "./lib/store";

const HELP = `Dopamine Store load tool: a 10:00:00 crowd against a store.

  npm run loadtest -- --users 100000 --stock 1000 [--products P] [--connections C]
                      [--target URL ...] [--json FILE] [--api-processes N] [--open-in SECONDS]
                      [--expect-granted N] [--keep-db] [--rate R]

Seeds that many buyers straight into PostgreSQL (bulk rows, one precomputed password hash) and
mints their access tokens with the store's JWT_SECRET. It is an operator's tool for test
environments: it writes users into the database it is given and signs tokens with your secret.
Never point it at production.

Without --target it starts the store itself (node dist/server.js; --api-processes 2 adds an
api-only process over NATS) on a fresh database, with a secret of its own, and drops that database
afterwards unless --keep-db. With --target (repeatable) it loads a running store: DATABASE_URL and
JWT_SECRET must then be that store's.

Creates the product(s) opening --open-in seconds later (default 3), and at the opening fires one
claim per buyer, spread over the gateways, keeping C connections busy (closed loop). With --rate R
it runs open loop instead: claim i is sent at i / R seconds after the opening whatever the earlier
answers, and its latency counts from that scheduled time, so queueing shows (C then caps the
sockets per gateway; a claim that finds them all busy waits, and the wait counts). Prints a live
progress line, then requests/s, latency, answers by outcome, errors, timeouts, peak memory of the
store's processes (when it started them), and the checks: from PostgreSQL, granted = min(stock,
buyers) with all buyers distinct; from the answers, the order check. Exits 1 when a check fails.
--expect-granted N replaces the expected granted count (to see a failing check).`;

export interface SaleOptions {
	users: number;
	stock: number;
	products: number;
	connections: number;
	targets?: string[];
	apiProcesses?: number;
	openInSeconds?: number;
	expectGranted?: number;
	keepDb?: boolean;
	databaseUrl?: string;
	jwtSecret?: string;
	/** Progress lines to stderr (default true). */
	progress?: boolean;
	/** The products' name (a number is added when there are several). */
	productName?: string;
	/** Told the product ids and the opening once the products exist (npm run demo prints where to watch). */
	onProducts?(productIds: string[], saleAt: Date): void;
	/** Open loop: claims per second, sent on schedule whatever the answers (default: closed loop). */
	rate?: number;
}

export interface ProductReport {
	productId: string;
	buyers: number;
	db: { granted: number; distinctBuyers: number };
	expectedGranted: number;
	fairness: { ok: boolean; epochs: number; problems: string[] };
	outcomes: Record<string, number>;
}

export interface SaleReport {
	/** The database the run used (no credentials). */
	database: string;
	productId: string;
	requests: number;
	rps: number;
	seconds: number;
	latency: { p50: number; p99: number; max: number };
	outcomes: Record<string, number>;
	errors: number;
	timeouts: number;
	db: { granted: number; distinctBuyers: number };
	fairness: { ok: boolean };
	/** "closed" (C connections, each sends when answered) or "open" (on schedule at `rate`). */
	loop: "closed" | "open";
	rate: number | null;
	/** Open loop only: claims the generator sent more than 5 ms late, and its own CPU ms. */
	lateSends: number | null;
	generatorCpuMs: number | null;
	peakMemoryMb: number[] | null;
	products: ProductReport[];
	checks: { name: string; ok: boolean; detail: string }[];
	ok: boolean;
}

const ADMIN_DB = process.env.LOADTEST_ADMIN_DB_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

async function dropDatabase(url: string) {
	const name = new URL(url).pathname.slice(1);
	const c = new Client({ connectionString: ADMIN_DB });
	await c.connect();
	try {
		await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
	} finally {
		await c.end();
	}
}

function log(enabled: boolean, line: string) {
	if (enabled) process.stderr.write(line + "\n");
}

export async function runSale(o: SaleOptions): Promise<SaleReport> {
	const progress = o.progress ?? true;
	const own = !o.targets || o.targets.length === 0;
	const runId = randomBytes(3).toString("hex");
	let databaseUrl = o.databaseUrl ?? process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/dopamine";
	let jwtSecret = o.jwtSecret ?? process.env.JWT_SECRET ?? "";
	let store: StoreProcesses | null = null;
	if (own) {
		const u = new URL(ADMIN_DB);
		u.pathname = `/dopamine_load_${Date.now()}_${runId}`;
		databaseUrl = u.toString();
		jwtSecret = randomBytes(32).toString("hex");
		log(progress, `starting the store: ${o.apiProcesses ?? 1} api process(es) on a fresh database`);
		store = await startStore({ apiProcesses: o.apiProcesses ?? 1, databaseUrl, jwtSecret });
	} else if (!jwtSecret) {
		throw new Error("JWT_SECRET must be the target store's secret when --target is given");
	}
	const targets = store ? store.targets : o.targets!;
	try {
		log(progress, `seeding ${o.users} buyers...`);
		const t0 = Date.now();
		const buyers = await seedBuyers(databaseUrl, o.users, `lt${runId}_`, jwtSecret);
		const adminToken = await seedAdmin(databaseUrl, `lt${runId}_`, jwtSecret);
		log(progress, `seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

		// The opening, by the server's clock.
		const serverNow = Date.parse(((await (await fetch(`${targets[0]}/api/time`)).json()) as { now: string }).now);
		const skew = serverNow - Date.now();
		const saleAt = new Date(serverNow + (o.openInSeconds ?? 3) * 1000);
		const productIds: string[] = [];
		for (let p = 0; p < o.products; p++) {
			const res = await postWhenAvailable(`${targets[0]}/api/admin/products`, {
				method: "POST",
				headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
				body: JSON.stringify({
					name: o.productName ? (o.products > 1 ? `${o.productName} ${p + 1}` : o.productName) : `Load drop ${runId}-${p + 1}`,
					price: o.productName ? 59000 : 1000,
					stock: o.stock,
					saleAt: saleAt.toISOString(),
				}),
			});
			if (res.status !== 201) throw new Error(`creating a product failed: ${res.status} ${await res.text()}`);
			productIds.push(((await res.json()) as { product: { id: string } }).product.id);
		}
		const shots: Shot[] = buyers.map((b, i) => ({
			target: i % targets.length,
			method: "POST",
			path: `/api/products/${productIds[i % productIds.length]}/slots`,
			headers: { authorization: `Bearer ${b.token}` },
		}));
		o.onProducts?.(productIds, saleAt);
		const waitMs = saleAt.getTime() - skew - Date.now();
		log(progress, `product(s) ${productIds.join(", ")}: ${o.stock} each, opening in ${(waitMs / 1000).toFixed(1)} s`);
		if (waitMs > 0) await new Promise(r => setTimeout(r, waitMs + 5));

		const answers: ObservedAnswer[][] = productIds.map(() => []);
		const outcomes: Record<string, number> = {};
		const peak = () => (store ? store.peakMemoryMb() : null);
		const result: LoadResult & Partial<OpenLoopResult> = await (o.rate ? (s: Shot[], x: LoadOptions) => fireOpen(s, { ...x, rate: o.rate! }) : fire)(shots, {
			targets,
			connections: o.connections,
			keepBodies: true,
			onHit: (i, hit) => {
				let body: unknown = null;
				try {
					body = hit.body ? JSON.parse(hit.body) : null;
				} catch {
					/* not JSON */
				}
				const a = hit.status === 0 ? { type: "ERROR" } : observe(hit.status, body);
				outcomes[a.type] = (outcomes[a.type] ?? 0) + 1;
				answers[i % productIds.length].push(a);
			},
			onProgress: p => {
				const byOutcome = Object.entries(outcomes).map(([k, v]) => `${k} ${v}`).join("  ");
				const line = `sent ${p.sent}  answered ${p.answered}  ${byOutcome}  ${Math.round(p.rps)} req/s`;
				if (progress) process.stderr.write(process.stderr.isTTY ? `\r${line.padEnd(110)}` : line + "\n");
			},
		});
		if (progress && process.stderr.isTTY) process.stderr.write("\n");

		const products: ProductReport[] = [];
		for (let p = 0; p < productIds.length; p++) {
			const counts = await productCounts(databaseUrl, productIds[p]);
			const buyersHere = shots.filter((_, i) => i % productIds.length === p).length;
			const fairness = checkOrder(answers[p]);
			const perProduct: Record<string, number> = {};
			for (const a of answers[p]) perProduct[a.type] = (perProduct[a.type] ?? 0) + 1;
			products.push({
				productId: productIds[p],
				buyers: buyersHere,
				db: { granted: counts.granted, distinctBuyers: counts.distinctBuyers },
				expectedGranted: o.expectGranted ?? Math.min(o.stock, buyersHere),
				fairness,
				outcomes: perProduct,
			});
		}
		const checks = products.flatMap(p => [
			{ name: `product ${p.productId}: granted = ${p.expectedGranted}`, ok: p.db.granted === p.expectedGranted, detail: `PostgreSQL has ${p.db.granted}` },
			{ name: `product ${p.productId}: every grant a distinct buyer`, ok: p.db.distinctBuyers === p.db.granted, detail: `${p.db.distinctBuyers} distinct of ${p.db.granted}` },
			{ name: `product ${p.productId}: order check`, ok: p.fairness.ok, detail: p.fairness.ok ? `${p.fairness.epochs} epoch(s)` : p.fairness.problems.slice(0, 3).join("; ") },
		]);
		const granted = products.reduce((s, p) => s + p.db.granted, 0);
		const distinct = products.reduce((s, p) => s + p.db.distinctBuyers, 0);
		const dbName = new URL(databaseUrl);
		dbName.password = "";
		return {
			database: dbName.toString(),
			productId: productIds[0],
			requests: result.requests,
			rps: result.rps,
			seconds: result.seconds,
			latency: result.latency,
			outcomes,
			errors: result.errors,
			timeouts: result.timeouts,
			db: { granted, distinctBuyers: distinct },
			fairness: { ok: products.every(p => p.fairness.ok) },
			loop: o.rate ? "open" : "closed",
			rate: o.rate ?? null,
			lateSends: result.lateSends ?? null,
			generatorCpuMs: result.generatorCpuMs ?? null,
			peakMemoryMb: peak(),
			products,
			checks,
			ok: checks.every(c => c.ok),
		};
	} finally {
		if (store) await store.stop();
		if (own && !o.keepDb) await dropDatabase(databaseUrl).catch(() => undefined);
	}
}

export function formatReport(r: SaleReport): string {
	const rows: [string, string][] = [
		["requests", String(r.requests)],
		["requests/s", r.rps.toFixed(0)],
		["loop", r.loop === "open" ? `open, ${r.rate} claims/s scheduled (${r.lateSends} sent > 5 ms late; generator CPU ${r.generatorCpuMs?.toFixed(0)} ms)` : "closed"],
		["latency p50 / p99 / max", `${r.latency.p50.toFixed(1)} / ${r.latency.p99.toFixed(1)} / ${r.latency.max.toFixed(1)} ms`],
		...Object.entries(r.outcomes).sort().map(([k, v]) => [`answers ${k}`, String(v)] as [string, string]),
		["errors", String(r.errors)],
		["timeouts", String(r.timeouts)],
		["peak memory per store process", r.peakMemoryMb ? r.peakMemoryMb.map(m => `${m.toFixed(0)} MB`).join(", ") : "(store not started by this tool)"],
		["granted in PostgreSQL", `${r.db.granted} (${r.db.distinctBuyers} distinct buyers)`],
	];
	const w = Math.max(...rows.map(([k]) => k.length));
	const lines = rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`);
	lines.push("", "  checks:");
	for (const c of r.checks) lines.push(`    ${c.ok ? "ok  " : "FAIL"}  ${c.name} (${c.detail})`);
	return lines.join("\n");
}

async function main() {
	const { values } = parseArgs({
		options: {
			users: { type: "string", default: "1000" },
			stock: { type: "string", default: "100" },
			products: { type: "string", default: "1" },
			connections: { type: "string", default: "100" },
			target: { type: "string", multiple: true },
			json: { type: "string" },
			"api-processes": { type: "string", default: "1" },
			"open-in": { type: "string", default: "3" },
			"expect-granted": { type: "string" },
			"keep-db": { type: "boolean", default: false },
			rate: { type: "string" },
			help: { type: "boolean", short: "h", default: false },
		},
	});
	if (values.help) {
		console.log(HELP);
		return;
	}
	const num = (name: string, v: string | undefined, min: number) => {
		const n = Number(v);
		if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}`);
		return n;
	};
	const report = await runSale({
		users: num("users", values.users, 1),
		stock: num("stock", values.stock, 0),
		products: num("products", values.products, 1),
		connections: num("connections", values.connections, 1),
		targets: values.target,
		apiProcesses: num("api-processes", values["api-processes"], 1),
		openInSeconds: num("open-in", values["open-in"], 0),
		expectGranted: values["expect-granted"] === undefined ? undefined : num("expect-granted", values["expect-granted"], 0),
		keepDb: values["keep-db"],
		rate: values.rate === undefined ? undefined : num("rate", values.rate, 1),
	});
	console.log(formatReport(report));
	if (values.json) fs.writeFileSync(values.json, JSON.stringify(report, null, 2));
	process.exitCode = report.ok ? 0 : 1;
}

if (require.main === module)
	main().catch(err => {
		console.error(`loadtest: ${err?.message ?? err}`);
		process.exitCode = 2;
	});
