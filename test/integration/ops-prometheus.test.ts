import { ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "../../bench/lib/store";
import { dropDatabase, freshDatabaseUrl } from "../helpers/db";
import { deleteStream } from "../helpers/jetstream";
import { freshNamespace, NATS_URL, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { track, untrack } from "../helpers/resources";
import { claim, createSale, seedBuyers, sleep } from "../helpers/sale";

/**
 * The Grafana dashboard against a real Prometheus (Debian's /usr/bin/prometheus, on a loopback
 * port, a temporary storage dir) that scrapes a store which has just run a small sale: the JSON
 * parses, and every PromQL expression in it returns data.
 */
const PROMETHEUS = process.env.PROMETHEUS_PATH ?? "/usr/bin/prometheus";
const DASHBOARD = path.join(__dirname, "..", "..", "ops", "grafana", "dashboards", "dopamine-store.json");

describe("Grafana dashboard against a real Prometheus", () => {
	let db: string;
	// Over NATS: the notifier's consumer lag is JetStream's own number.
	const NS = freshNamespace("prom");
	let store: StoreNode;
	let prom: ChildProcess;
	let promUrl: string;
	let dir: string;
	let promLog = "";
	const key = {};

	beforeAll(async () => {
		db = freshDatabaseUrl("prom");
		store = await startNode({ DATABASE_URL: db, JWT_SECRET: TEST_SECRET, TRANSPORTER: NATS_URL, NAMESPACE: NS });
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "dopamine-prom-"));
		const target = new URL(store.url).host;
		// Same job name as ops/prometheus.yml, so the dashboard's expressions run unchanged.
		fs.writeFileSync(
			path.join(dir, "prometheus.yml"),
			`global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dopamine-store\n    metrics_path: /metrics\n    static_configs:\n      - targets: ["${target}"]\n`
		);
		const port = await freePort();
		promUrl = `http://127.0.0.1:${port}`;
		prom = spawn(PROMETHEUS, [`--config.file=${path.join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
		prom.stdout!.on("data", d => (promLog += d));
		prom.stderr!.on("data", d => (promLog += d));
		track(key, { name: `prometheus ${prom.pid}`, close: async () => void prom.kill("SIGKILL") });
		await waitFor("Prometheus to be ready", async () => (await fetch(`${promUrl}/-/ready`)).ok, 30_000).catch(err => {
			throw new Error(`${err.message}\n${promLog}`);
		});
	});

	afterAll(async () => {
		if (prom && prom.exitCode === null) {
			const exited = new Promise(r => prom.once("exit", r));
			prom.kill("SIGTERM");
			await exited;
		}
		untrack(key);
		await store?.stop();
		await deleteStream(NS);
		if (db) await dropDatabase(db);
		if (dir) fs.rmSync(dir, { recursive: true, force: true });
	});

	async function query(expr: string): Promise<{ status: string; data: { resultType: string; result: unknown[] } }> {
		const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
		return res.json() as never;
	}

	it("parses, and every expression returns data after a small sale", async () => {
		const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, "utf8"));
		const exprs: { panel: string; expr: string }[] = dashboard.panels.flatMap((p: any) => p.targets.map((t: any) => ({ panel: p.title, expr: t.expr })));
		expect(exprs.length).toBeGreaterThanOrEqual(7);

		// Prometheus has the store up before the sale, so rates have a "before".
		await waitFor("the store's first scrapes", async () => (await query('up{job="dopamine-store"} == 1')).data.result.length === 1, 20_000);
		const productId = await createSale(db, 5);
		const buyers = await seedBuyers(db, 15, "prom");
		const answers = await Promise.all(buyers.map(b => claim(store.url, productId, b)));
		expect(answers.filter(a => a.status === 201)).toHaveLength(5);
		// A few more after sold out: answered by the gateway from its flag.
		await Promise.all(buyers.slice(0, 5).map(b => claim(store.url, productId, b)));

		// A few scrapes after the sale; the notifier's gauges are set every few seconds.
		await sleep(4_000);
		const missing: string[] = [];
		await waitFor(
			"every expression of the dashboard to return data",
			async () => {
				missing.length = 0;
				for (const { panel, expr } of exprs) {
					const r = await query(expr);
					expect(r.status).toBe("success");
					if (r.data.result.length === 0) missing.push(`${panel}: ${expr}`);
				}
				return missing.length === 0;
			},
			20_000
		).catch(() => {
			throw new Error(`no data for:\n${missing.join("\n")}`);
		});

		// And the data is the sale's: five grants counted by outcome.
		const granted = await query('sum(dopamine_claims_total{outcome="GRANTED"})');
		expect(Number((granted.data.result[0] as any).value[1])).toBe(5);
	});
});
