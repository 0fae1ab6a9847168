import { ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { Client } from "pg";

/**
 * The cluster of docker-compose.yml, on loopback from Debian's packages (issue 21): three
 * nats-servers in a JetStream cluster that require a login, PgBouncer in front of PostgreSQL,
 * HAProxy in front of N gateways, and M workers running every other service. Used by
 * `npm run cluster` (ops/cluster/main.ts) and by the tests, which need it to start in seconds.
 *
 * Every process is a child of the launcher, and its pid is written to <runDir>/pids as it starts,
 * so `--down` (another process) stops exactly what was started, and nothing else.
 */

export interface ClusterOptions {
	gateways: number;
	workers: number;
	/** Where configs, logs, data and the pid list go. */
	runDir: string;
	/** HAProxy's public port; 0 = any free port. */
	port: number;
	/** PostgreSQL the PgBouncer sits in front of (its database is created if missing). */
	databaseUrl: string;
	/** The store's settings (ADMIN_*, SMTP_URL, SIGNUPS_PER_HOUR...): given to every node. */
	storeEnv: Record<string, string>;
	/** A NATS login; generated when absent. */
	natsUser?: string;
	natsPassword?: string;
	/** Moleculer namespace of this cluster. */
	namespace?: string;
	log?: (line: string) => void;
}

export interface ManagedProcess {
	name: string;
	proc: ChildProcess;
	port: number;
	/** Extra port (NATS: monitoring; store nodes: metrics). */
	extraPort?: number;
	env?: Record<string, string>;
	/** How to start it again on the same ports (a test restarts PgBouncer, a NATS server...). */
	restart: () => Promise<ManagedProcess>;
}

export interface Cluster {
	shopUrl: string;
	statsUrl: string;
	nats: ManagedProcess[];
	natsUser: string;
	natsPassword: string;
	pgbouncer: ManagedProcess;
	haproxy: ManagedProcess;
	gateways: ManagedProcess[];
	workers: ManagedProcess[];
	/** The store database (direct) and the URLs the nodes use through PgBouncer. */
	databaseUrl: string;
	poolUrl: string;
	sessionUrl: string;
	/** TRANSPORTER as the nodes have it (with the login). */
	transporter: string;
	namespace: string;
	addresses(): string[];
	stop(): Promise<void>;
}

export const WORKER_SERVICES = "users,products,allocator,slots,payments,notifier,sales";
// From dist/ops/cluster (npm run cluster) or ops/cluster (the tests, through ts-jest): dist/server.js either way.
const SERVER = path.basename(path.join(__dirname, "..", "..")) === "dist" ? path.join(__dirname, "..", "..", "server.js") : path.join(__dirname, "..", "..", "dist", "server.js");
/** HAProxy's health check interval: a stopping gateway drains for longer than `fall` checks. */
const CHECK_INTER_MS = 500;
const CHECK_FALL = 2;
const DRAIN_MS = CHECK_INTER_MS * (CHECK_FALL + 2);

export async function freePort(): Promise<number> {
	const s = net.createServer();
	await new Promise<void>(r => s.listen(0, "127.0.0.1", () => r()));
	const port = (s.address() as net.AddressInfo).port;
	await new Promise<void>(r => s.close(() => r()));
	return port;
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

async function portOpen(port: number): Promise<boolean> {
	return new Promise(resolve => {
		const s = net.connect(port, "127.0.0.1", () => {
			s.destroy();
			resolve(true);
		});
		s.on("error", () => resolve(false));
	});
}

async function waitPort(name: string, port: number, proc: ChildProcess, ms: number, logFile: string): Promise<void> {
	const until = Date.now() + ms;
	while (Date.now() < until) {
		if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${name} exited (${proc.exitCode ?? proc.signalCode}); see ${logFile}:\n${tail(logFile)}`);
		if (await portOpen(port)) return;
		await sleep(50);
	}
	throw new Error(`${name} did not listen on 127.0.0.1:${port} within ${ms} ms; see ${logFile}:\n${tail(logFile)}`);
}

function tail(file: string): string {
	try {
		return readFileSync(file, "utf8").split("\n").slice(-15).join("\n");
	} catch {
		return "";
	}
}

/** The Debian binaries the cluster runs on: installed with apt-get when missing, as .ci/run does. */
export function ensurePackages(log: (l: string) => void): void {
	const wanted: [string, string][] = [
		["/usr/sbin/nats-server", "nats-server"],
		["/usr/sbin/haproxy", "haproxy"],
		["/usr/sbin/pgbouncer", "pgbouncer"],
	];
	const missing = wanted.filter(([bin]) => !existsSync(bin)).map(([, pkg]) => pkg);
	if (missing.length === 0) return;
	log(`installing ${missing.join(", ")} (apt-get)`);
	const sudo = process.getuid?.() === 0 ? [] : ["sudo"];
	const run = (args: string[]) => execFileSync(sudo[0] ?? args[0], sudo.length ? args : args.slice(1), { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
	run(["apt-get", "update", "-qq"]);
	run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", ...missing]);
}

async function ensureDatabase(url: string): Promise<void> {
	const target = new URL(url);
	const name = decodeURIComponent(target.pathname.slice(1));
	const admin = new URL(url);
	admin.pathname = "/postgres";
	const c = new Client({ connectionString: admin.toString() });
	await c.connect();
	try {
		const { rows } = await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
		if (rows.length === 0) await c.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
	} finally {
		await c.end();
	}
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
	const log = o.log ?? (() => undefined);
	mkdirSync(o.runDir, { recursive: true });
	const pidFile = path.join(o.runDir, "pids");
	if (existsSync(pidFile) && readFileSync(pidFile, "utf8").trim())
		throw new Error(`${o.runDir} holds a running cluster's pids: stop it first (npm run cluster -- --down)`);
	writeFileSync(pidFile, "");
	const all: ManagedProcess[] = [];
	const natsUser = o.natsUser ?? "store";
	const natsPassword = o.natsPassword ?? randomBytes(18).toString("base64url");
	const namespace = o.namespace ?? "";

	const spawnLogged = (name: string, cmd: string, args: string[], env?: Record<string, string>): ChildProcess => {
		const logFile = path.join(o.runDir, `${name}.log`);
		const fd = require("node:fs").openSync(logFile, "a");
		const proc = spawn(cmd, args, { stdio: ["ignore", fd, fd], env: env ?? { PATH: process.env.PATH ?? "" } });
		require("node:fs").closeSync(fd);
		appendFileSync(pidFile, `${proc.pid} ${name}\n`);
		return proc;
	};

	const stopAll = async () => {
		// Gateways first (they drain), then workers, then what they stand on.
		const order = [...all].reverse();
		await Promise.all(order.filter(p => p.name.startsWith("gateway")).map(p => stopProc(p.proc, "SIGTERM", 15_000)));
		await Promise.all(order.filter(p => p.name.startsWith("worker")).map(p => stopProc(p.proc, "SIGTERM", 15_000)));
		await Promise.all(order.map(p => stopProc(p.proc, "SIGTERM", 5_000)));
		writeFileSync(pidFile, "");
	};

	try {
		// ---- NATS: three servers, one cluster, JetStream, a login on client and route ports.
		const natsPorts = await Promise.all([0, 1, 2].map(async () => ({ client: await freePort(), route: await freePort(), monitor: await freePort() })));
		const routeUser = "route";
		const routePassword = randomBytes(18).toString("base64url");
		const natsConf = (i: number) => {
			const p = natsPorts[i];
			const routes = natsPorts.filter((_, j) => j !== i).map(q => `nats-route://${routeUser}:${routePassword}@127.0.0.1:${q.route}`);
			return [
				`server_name: n${i + 1}`,
				`listen: 127.0.0.1:${p.client}`,
				`http: 127.0.0.1:${p.monitor}`,
				`jetstream { store_dir: ${JSON.stringify(path.join(o.runDir, `nats-${i + 1}`))} }`,
				// Nothing here accepts an anonymous client: one user, the store's.
				`authorization { users: [ { user: ${JSON.stringify(natsUser)}, password: ${JSON.stringify(natsPassword)} } ] }`,
				`cluster {`,
				`  name: dopamine`,
				`  listen: 127.0.0.1:${p.route}`,
				`  authorization { user: ${routeUser}, password: ${JSON.stringify(routePassword)} }`,
				`  routes: [ ${routes.map(r => JSON.stringify(r)).join(", ")} ]`,
				`}`,
			].join("\n");
		};
		const startNats = async (i: number): Promise<ManagedProcess> => {
			const conf = path.join(o.runDir, `nats-${i + 1}.conf`);
			writeFileSync(conf, natsConf(i), { mode: 0o600 });
			const name = `nats-${i + 1}`;
			const proc = spawnLogged(name, "/usr/sbin/nats-server", ["-c", conf]);
			const mp: ManagedProcess = { name, proc, port: natsPorts[i].client, extraPort: natsPorts[i].monitor, restart: () => startNats(i) };
			all.push(mp);
			await waitPort(name, natsPorts[i].client, proc, 15_000, path.join(o.runDir, `${name}.log`));
			return mp;
		};
		const nats = await Promise.all([0, 1, 2].map(startNats));
		// JetStream needs its meta leader before a replicated stream can be made: wait for it.
		await waitJetStream(natsPorts.map(p => p.monitor), 30_000);
		const transporter = natsPorts.map(p => `nats://${encodeURIComponent(natsUser)}:${encodeURIComponent(natsPassword)}@127.0.0.1:${p.client}`).join(",");
		log(`NATS cluster up: ${natsPorts.map(p => `127.0.0.1:${p.client}`).join(", ")}`);

		// ---- PgBouncer: "store" in transaction mode for the store's pool, "store_session" in
		// session mode for Agenda (LISTEN/NOTIFY, advisory locks) and the migrations.
		await ensureDatabase(o.databaseUrl);
		const pg = new URL(o.databaseUrl);
		const dbName = decodeURIComponent(pg.pathname.slice(1));
		const pgbPort = await freePort();
		const pgUser = decodeURIComponent(pg.username || "postgres");
		// PgBouncer refuses to run as root: as root, it runs as postgres in a directory of its own.
		const pgbDir = path.join(o.runDir, "pgbouncer");
		mkdirSync(pgbDir, { recursive: true });
		const asUser = process.getuid?.() === 0 ? "postgres" : null;
		const pgbIni = path.join(pgbDir, "pgbouncer.ini");
		const userlist = path.join(pgbDir, "userlist.txt");
		const pgPassword = decodeURIComponent(pg.password || "");
		writeFileSync(userlist, `"${pgUser}" "${pgPassword}"\n`, { mode: 0o600 });
		const target = `host=${pg.hostname} port=${pg.port || 5432} dbname=${dbName} user=${pgUser}${pgPassword ? ` password=${pgPassword}` : ""}`;
		writeFileSync(
			pgbIni,
			[
				"[databases]",
				`store = ${target} pool_mode=transaction pool_size=20`,
				// Session mode keeps a server connection per open client: each worker's two Agenda
				// LISTENs hold one for ever, and its jobs need one more now and then (docs/cluster.md).
				`store_session = ${target} pool_mode=session pool_size=${3 * o.workers + 10}`,
				"[pgbouncer]",
				`listen_addr = 127.0.0.1`,
				`listen_port = ${pgbPort}`,
				`unix_socket_dir =`,
				// Loopback only; a production PgBouncer uses scram-sha-256 with the userlist (docs/cluster.md).
				`auth_type = ${pgPassword ? "plain" : "trust"}`,
				`auth_file = ${userlist}`,
				`max_client_conn = 2000`,
				`default_pool_size = 20`,
				// A server connection a restart or failover broke is dropped, not handed out.
				`server_check_delay = 1`,
				`ignore_startup_parameters = extra_float_digits,options`,
				`logfile = ${path.join(pgbDir, "pgbouncer.log")}`,
				`pidfile = ${path.join(pgbDir, "pgbouncer.pid")}`,
				`admin_users = ${pgUser}`,
			].join("\n"),
			{ mode: 0o600 }
		);
		if (asUser) {
			const uid = Number(execFileSync("id", ["-u", asUser]).toString().trim());
			const gid = Number(execFileSync("id", ["-g", asUser]).toString().trim());
			for (const f of [pgbDir, pgbIni, userlist]) require("node:fs").chownSync(f, uid, gid);
			// postgres must get through the run dir to its own (a mkdtemp dir is 0700); it lists nothing.
			require("node:fs").chmodSync(o.runDir, 0o711);
		}
		const startPgbouncer = async (): Promise<ManagedProcess> => {
			rmSync(path.join(pgbDir, "pgbouncer.pid"), { force: true });
			const proc = spawnLogged("pgbouncer", "/usr/sbin/pgbouncer", [...(asUser ? ["-u", asUser] : []), pgbIni]);
			const mp: ManagedProcess = { name: "pgbouncer", proc, port: pgbPort, restart: startPgbouncer };
			all.push(mp);
			await waitPort("pgbouncer", pgbPort, proc, 15_000, path.join(pgbDir, "pgbouncer.log"));
			return mp;
		};
		const pgbouncer = await startPgbouncer();
		const auth = `${encodeURIComponent(pgUser)}${pgPassword ? `:${encodeURIComponent(pgPassword)}` : ""}@127.0.0.1:${pgbPort}`;
		const poolUrl = `postgres://${auth}/store`;
		const sessionUrl = `postgres://${auth}/store_session`;
		log(`PgBouncer up: 127.0.0.1:${pgbPort} (store: transaction mode; store_session: session mode)`);

		// ---- The store's nodes.
		const haPort = o.port || (await freePort());
		const jwtSecret = o.storeEnv.JWT_SECRET ?? randomBytes(32).toString("base64url");
		const nodeEnv = (name: string, extra: Record<string, string>): Record<string, string> => ({
			...o.storeEnv,
			PATH: process.env.PATH ?? "",
			HOME: process.env.HOME ?? "/tmp",
			JWT_SECRET: jwtSecret,
			TRANSPORTER: transporter,
			NAMESPACE: namespace,
			NODE_ID: name,
			DATABASE_URL: poolUrl,
			DATABASE_SESSION_URL: sessionUrl,
			NOTIFY_STREAM_REPLICAS: "3",
			// The launcher knows a node is ready by its "started successfully" line (info): never quieter than info.
			LOG_LEVEL: ["debug", "trace"].includes(o.storeEnv.LOG_LEVEL ?? "") ? o.storeEnv.LOG_LEVEL : "info",
			// Links in mails and pages point at the balancer, not at one gateway.
			PUBLIC_URL: o.storeEnv.PUBLIC_URL ?? `http://127.0.0.1:${haPort}`,
			...extra,
		});
		const startNode = async (name: string, extra: Record<string, string>, port: number): Promise<ManagedProcess> => {
			const metricsPort = await freePort();
			const env = nodeEnv(name, { ...extra, PORT: String(port), METRICS_PORT: String(metricsPort) });
			const proc = spawnLogged(name, process.execPath, [SERVER], env);
			const mp: ManagedProcess = { name, proc, port, extraPort: metricsPort, env, restart: () => startNode(name, extra, port) };
			all.push(mp);
			// Ready when Moleculer says every service started (a worker has migrated; the gateway listens).
			await waitLog(name, /started successfully/, proc, 60_000, path.join(o.runDir, `${name}.log`));
			return mp;
		};
		// Workers first: gateways answer 503 to claims until an allocator is there.
		const workers = await Promise.all(Array.from({ length: o.workers }, async (_, i) => startNode(`worker-${i + 1}`, { SERVICES: WORKER_SERVICES }, await freePort())));
		const gateways = await Promise.all(
			Array.from({ length: o.gateways }, async (_, i) =>
				startNode(`gateway-${i + 1}`, { SERVICES: "api", TRUSTED_PROXIES: "127.0.0.1", GATEWAY_DRAIN_MS: String(DRAIN_MS) }, await freePort())
			)
		);
		log(`${o.workers} worker(s) and ${o.gateways} gateway(s) up`);

		// ---- HAProxy.
		const statsPort = await freePort();
		const haCfg = path.join(o.runDir, "haproxy.cfg");
		writeFileSync(haCfg, haproxyConfig(haPort, statsPort, gateways.map(g => ({ name: g.name, port: g.port }))));
		const startHaproxy = async (): Promise<ManagedProcess> => {
			const proc = spawnLogged("haproxy", "/usr/sbin/haproxy", ["-db", "-f", haCfg]);
			const mp: ManagedProcess = { name: "haproxy", proc, port: haPort, extraPort: statsPort, restart: startHaproxy };
			all.push(mp);
			await waitPort("haproxy", haPort, proc, 15_000, path.join(o.runDir, "haproxy.log"));
			return mp;
		};
		const haproxy = await startHaproxy();
		const shopUrl = `http://127.0.0.1:${haPort}`;
		const statsUrl = `http://127.0.0.1:${statsPort}/`;
		await waitAllUp(statsUrl, o.gateways, 30_000);

		return {
			shopUrl,
			statsUrl,
			nats,
			natsUser,
			natsPassword,
			pgbouncer,
			haproxy,
			gateways,
			workers,
			databaseUrl: o.databaseUrl,
			poolUrl,
			sessionUrl,
			transporter,
			namespace,
			addresses: () => [
				`Shop (through HAProxy):  ${shopUrl}/`,
				`Admin:                   ${shopUrl}/admin`,
				o.storeEnv.SMTP_URL ? `Mail:                    sent through ${o.storeEnv.SMTP_URL.replace(/\/\/[^@/]*@/, "//")}` : `Mailbox:                 ${shopUrl}/admin/mailbox`,
				`HAProxy stats:           ${statsUrl}`,
				`Gateways:                ${gateways.map(g => `127.0.0.1:${g.port}`).join(", ")}`,
				`Metrics (Prometheus):    ${[...gateways, ...workers].map(n => `127.0.0.1:${n.extraPort}`).join(", ")}`,
				`NATS (login "${natsUser}", password in ${path.join(o.runDir, "nats-1.conf")}): ${nats.map(n => `127.0.0.1:${n.port}`).join(", ")}; monitoring ${nats.map(n => `http://127.0.0.1:${n.extraPort}/`).join(", ")}`,
				`PgBouncer:               127.0.0.1:${pgbPort} (databases store, store_session)`,
				`Logs and configs:        ${o.runDir}`,
			],
			stop: stopAll,
		};
	} catch (err) {
		await stopAll();
		throw err;
	}
}

export function haproxyConfig(port: number, statsPort: number, gateways: { name: string; port: number }[]): string {
	return [
		"global",
		"  maxconn 8000",
		"defaults",
		"  mode http",
		"  timeout connect 2s",
		"  timeout client 30s",
		"  timeout server 15s",
		"  timeout http-keep-alive 10s",
		"  option http-keep-alive",
		"frontend shop",
		`  bind 127.0.0.1:${port}`,
		// The buyer's address for the gateways' per-address limits (TRUSTED_PROXIES=127.0.0.1 names this balancer).
		"  option forwardfor",
		"  default_backend gateways",
		"backend gateways",
		"  balance roundrobin",
		"  option httpchk GET /api/health",
		"  http-check expect status 200",
		// A claim is safe to send again (the same buyer gets the same slot): a request a dying
		// gateway cut off, or one refused at connect, goes to another gateway.
		"  retries 3",
		"  option redispatch 1",
		"  retry-on conn-failure empty-response response-timeout 502 503",
		// Keep-alive to the gateways: a connection is reused across buyers' requests.
		"  http-reuse always",
		...gateways.map(g => `  server ${g.name} 127.0.0.1:${g.port} check inter ${CHECK_INTER_MS} fall ${CHECK_FALL} rise 2`),
		"listen stats",
		`  bind 127.0.0.1:${statsPort}`,
		"  stats enable",
		"  stats uri /",
		"  stats refresh 2s",
		"",
	].join("\n");
}

async function waitJetStream(monitorPorts: number[], ms: number): Promise<void> {
	const until = Date.now() + ms;
	while (Date.now() < until) {
		try {
			const res = await fetch(`http://127.0.0.1:${monitorPorts[0]}/jsz`);
			const body = (await res.json()) as { meta_cluster?: { leader?: string; cluster_size?: number } };
			if (body.meta_cluster?.leader) return;
		} catch {
			/* not yet */
		}
		await sleep(100);
	}
	throw new Error("the NATS cluster elected no JetStream leader");
}

async function waitLog(name: string, line: RegExp, proc: ChildProcess, ms: number, logFile: string): Promise<void> {
	const until = Date.now() + ms;
	while (Date.now() < until) {
		if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${name} exited (${proc.exitCode ?? proc.signalCode}); see ${logFile}:\n${tail(logFile)}`);
		if (line.test(readFileSync(logFile, "utf8"))) return;
		await sleep(100);
	}
	throw new Error(`${name} did not start within ${ms} ms; see ${logFile}:\n${tail(logFile)}`);
}

/** Gateways' states in HAProxy's stats (CSV: pxname, svname, ..., status at column 18). */
export async function gatewayStates(statsUrl: string): Promise<Record<string, string>> {
	const csv = await (await fetch(`${statsUrl};csv`)).text();
	const out: Record<string, string> = {};
	for (const f of csv.split("\n").filter(l => l.startsWith("gateways,")).map(l => l.split(","))) if (f[1] !== "BACKEND") out[f[1]] = f[17];
	return out;
}

/** Until HAProxy's health checks have passed every gateway (`rise` checks each). */
export async function waitAllUp(statsUrl: string, n: number, ms: number): Promise<void> {
	const until = Date.now() + ms;
	let last = {};
	while (Date.now() < until) {
		last = await gatewayStates(statsUrl).catch(() => ({}));
		if (Object.values(last).filter(s => s === "UP").length === n) return;
		await sleep(100);
	}
	throw new Error(`HAProxy did not see ${n} healthy gateway(s) within ${ms} ms: ${JSON.stringify(last)}`);
}

/** SIGTERM (or `signal`), then SIGKILL after `ms`: resolves once the process is gone. */
export async function stopProc(proc: ChildProcess, signal: NodeJS.Signals, ms: number): Promise<void> {
	if (proc.exitCode !== null || proc.signalCode !== null) return;
	const exited = new Promise(r => proc.once("exit", r));
	// Gone meanwhile (`--down` from another terminal): nothing to signal.
	const signalled = (s: NodeJS.Signals) => {
		try {
			proc.kill(s);
		} catch {
			/* already gone */
		}
	};
	signalled(signal);
	const timer = setTimeout(() => signalled("SIGKILL"), ms);
	await exited;
	clearTimeout(timer);
}

/**
 * `--down`: stops the processes listed in <runDir>/pids (SIGTERM, then SIGKILL), each only if
 * its command line is still the one started (a recycled pid is left alone).
 */
export async function downFromPidFile(runDir: string, log: (l: string) => void): Promise<number> {
	const pidFile = path.join(runDir, "pids");
	if (!existsSync(pidFile)) return 0;
	const entries = readFileSync(pidFile, "utf8").split("\n").filter(Boolean).map(l => {
		const [pid, name] = l.split(" ");
		return { pid: Number(pid), name };
	});
	const alive = (pid: number) => {
		try {
			process.kill(pid, 0);
			return true;
		} catch {
			return false;
		}
	};
	const ours = (pid: number) => {
		try {
			const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
			return /nats-server|pgbouncer|haproxy|server\.js/.test(cmd);
		} catch {
			return false;
		}
	};
	let stopped = 0;
	const order = [...entries.filter(e => e.name.startsWith("gateway")), ...entries.filter(e => e.name.startsWith("worker")), ...entries.filter(e => !/^(gateway|worker)/.test(e.name))];
	for (const group of [order.filter(e => e.name.startsWith("gateway")), order.filter(e => e.name.startsWith("worker")), order.filter(e => !/^(gateway|worker)/.test(e.name))]) {
		const live = group.filter(e => alive(e.pid) && ours(e.pid));
		for (const e of live) process.kill(e.pid, "SIGTERM");
		const until = Date.now() + 15_000;
		while (live.some(e => alive(e.pid)) && Date.now() < until) await sleep(100);
		for (const e of live) if (alive(e.pid)) process.kill(e.pid, "SIGKILL");
		stopped += live.length;
		for (const e of live) log(`stopped ${e.name} (${e.pid})`);
	}
	writeFileSync(pidFile, "");
	return stopped;
}
