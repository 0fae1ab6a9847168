import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse } from "yaml";
import { SERVICES } from "../../broker";

/**
 * No Docker engine runs here: docker-compose.yml is validated by Debian's `docker-compose config`
 * and read as YAML; ops/ (Prometheus, Grafana) is checked beside it.
 */
const ROOT = path.join(__dirname, "..", "..");
const read = (rel: string) => fs.readFileSync(path.join(ROOT, rel), "utf8");
const SECRETS = { JWT_SECRET: "a-secret-of-at-least-16-chars", POSTGRES_PASSWORD: "pg-pass", NATS_PASSWORD: "nats-pass", GRAFANA_ADMIN_PASSWORD: "graf-pass" };

/** `docker-compose config` on the file, from a clean environment plus `env`. */
function composeConfig(env: Record<string, string>) {
	return spawnSync("docker-compose", ["-f", path.join(ROOT, "docker-compose.yml"), "config"], {
		env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: os.tmpdir(), ...env },
		encoding: "utf8",
	});
}

describe("docker-compose.yml", () => {
	it("is valid for docker-compose, and the resolved file has the cluster's roles and what they stand on", () => {
		const r = composeConfig(SECRETS);
		expect(r.stderr).not.toMatch(/ERROR/i);
		expect(r.status).toBe(0);
		const file = parse(r.stdout);
		expect(Object.keys(file.services).sort()).toEqual(["api", "grafana", "haproxy", "nats", "nats-2", "nats-3", "nats-exporter", "pgbouncer", "pgbouncer-session", "postgres", "prometheus", "redis", "worker"]);
	});

	it("refuses to start without its secrets: no password has a default", () => {
		for (const missing of Object.keys(SECRETS)) {
			const env: Record<string, string> = { ...SECRETS };
			delete env[missing];
			const r = composeConfig(env);
			expect(r.status).not.toBe(0);
			expect(r.stderr).toContain(`set ${missing}`);
		}
		const text = read("docker-compose.yml");
		expect(text).not.toMatch(/ADMIN_PASSWORD:\s*\$\{ADMIN_PASSWORD:-[^}]/);
		expect(text).not.toMatch(/change-me|PASSWORD:\s*[a-z0-9]/i);
	});

	it("runs the store as `api` and `worker` roles that scale (no fixed node id, no single host port for a worker)", () => {
		const file = parse(composeConfig(SECRETS).stdout);
		for (const role of ["api", "worker"]) {
			const svc = file.services[role];
			expect(svc.environment).toMatchObject({
				TRANSPORTER: "nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222",
				NATS_USER: "store",
				NATS_PASSWORD: "nats-pass",
				NOTIFY_STREAM_REPLICAS: "3",
				DATABASE_URL: "postgres://postgres:pg-pass@pgbouncer:5432/dopamine",
				DATABASE_SESSION_URL: "postgres://postgres:pg-pass@pgbouncer-session:5432/dopamine",
				REDIS_URL: "redis://redis:6379",
				METRICS_PORT: "3030",
			});
			expect(svc.environment.NODE_ID).toBeUndefined();
			expect(svc.container_name).toBeUndefined();
			for (const s of String(svc.environment.SERVICES).split(",")) expect(Object.keys(SERVICES)).toContain(s);
		}
		expect(file.services.api.environment.SERVICES).toBe("api");
		expect(file.services.worker.ports).toBeUndefined();
		// Gateways are reached through HAProxy only.
		expect(file.services.api.ports).toBeUndefined();
		// Between them, the two roles run every service the store has.
		const all = new Set(["api", "worker"].flatMap(r => String(file.services[r].environment.SERVICES).split(",")));
		expect([...all].sort()).toEqual(Object.keys(SERVICES).sort());
	});

	it("puts HAProxy in front of the gateways (health checks, redispatch, keep-alive, X-Forwarded-For) and NATS, PgBouncer in the modes the store needs", () => {
		const file = parse(composeConfig(SECRETS).stdout);
		expect(file.services.haproxy.image).toMatch(/^haproxy:/);
		expect(file.services.haproxy.ports).toEqual(expect.arrayContaining([expect.objectContaining({ published: 8080, target: 8080 })]));
		const cfg = read("ops/cluster/haproxy.compose.cfg");
		for (const line of ["option httpchk GET /api/health", "option redispatch", "retries 3", "http-reuse always", "option forwardfor", "stats enable", "api:3000 check"]) expect(cfg).toContain(line);
		expect(file.services.api.environment.TRUSTED_PROXIES).toBeTruthy();
		for (const n of ["nats", "nats-2", "nats-3"]) {
			const cmd = file.services[n].command;
			expect(cmd).toEqual(expect.arrayContaining(["-js", "--user", "store", "--pass", "nats-pass", "--cluster_name", "dopamine"]));
		}
		expect(file.services.pgbouncer.environment.POOL_MODE).toBe("transaction");
		expect(file.services["pgbouncer-session"].environment.POOL_MODE).toBe("session");
	});

	it("gives NATS its monitoring port and the exporter reads it", () => {
		const file = parse(composeConfig(SECRETS).stdout);
		expect(file.services.nats.command).toEqual(expect.arrayContaining(["-m", "8222"]));
		expect(file.services["nats-exporter"].command).toContain("http://nats:8222");
	});
});

describe("ops/", () => {
	it("has Prometheus find every replica of both roles by DNS, and scrape the NATS exporter", () => {
		const prom = parse(read("ops/prometheus.yml"));
		const store = prom.scrape_configs.find((j: any) => j.job_name === "dopamine-store");
		expect(store.dns_sd_configs[0]).toMatchObject({ names: ["api", "worker"], type: "A", port: 3030 });
		expect(prom.scrape_configs.find((j: any) => j.job_name === "nats").static_configs[0].targets).toEqual(["nats-exporter:7777"]);
		const compose = parse(read("docker-compose.yml"));
		expect(compose.services.prometheus.volumes).toContain("./ops/prometheus.yml:/etc/prometheus/prometheus.yml:ro");
		expect(fs.existsSync(path.join(ROOT, "config", "prometheus.yml"))).toBe(false);
	});

	it("provisions Grafana with the Prometheus data source and the dashboard folder", () => {
		const ds = parse(read("ops/grafana/provisioning/datasources/prometheus.yml"));
		expect(ds.datasources[0]).toMatchObject({ uid: "prometheus", type: "prometheus", url: "http://prometheus:9090" });
		const provider = parse(read("ops/grafana/provisioning/dashboards/dopamine.yml"));
		expect(provider.providers[0].options.path).toBe("/var/lib/grafana/dashboards");
		const compose = parse(read("docker-compose.yml"));
		expect(compose.services.grafana.volumes).toEqual(
			expect.arrayContaining(["./ops/grafana/provisioning:/etc/grafana/provisioning:ro", "./ops/grafana/dashboards:/var/lib/grafana/dashboards:ro"])
		);
		const dash = JSON.parse(read("ops/grafana/dashboards/dopamine-store.json"));
		const titles = dash.panels.map((p: any) => p.title.toLowerCase()).join(" | ");
		for (const topic of ["claims/s by outcome", "p99 claim latency", "queue depth", "remaining stock", "consumer lag", "deliveries by status", "nodes"]) expect(titles).toContain(topic);
		for (const p of dash.panels) expect(p.datasource.uid).toBe("prometheus");
	});

	it("Debian's docker-compose is the one validating (its version is on record)", () => {
		expect(execFileSync("docker-compose", ["version", "--short"], { encoding: "utf8" })).toMatch(/^\d+\.\d+/);
	});
});
