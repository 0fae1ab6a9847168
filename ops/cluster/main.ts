import os from "node:os";
import path from "node:path";
import { downFromPidFile, ensurePackages, startCluster } from "./launcher";

/**
 * `npm run cluster [-- --gateways N --workers M --port P --dir D]`: the store's cluster on this
 * machine (docs/cluster.md). Ctrl-C stops it; `npm run cluster -- --down` stops one started
 * from another terminal.
 */

/** The store's settings a newcomer may set in the environment of `npm run cluster`: every node gets them. */
const PASSED = /^(ADMIN_|SMTP_|MAIL_|SIGNUPS_|LOGIN_|PASSWORD_|SLOT_|CLAIM_|NOTIFIER_|SLACK_|DISCORD_|LOCALE$|JWT_|REDIS_URL$|LOG_LEVEL$|PUBLIC_URL$|SOLD_OUT_|DB_POOL_SIZE$|AGENDA_|REQUEST_TIMEOUT_MS$)/;

function arg(name: string, fallback: number): number {
	const i = process.argv.indexOf(`--${name}`);
	if (i < 0) return fallback;
	const n = Number(process.argv[i + 1]);
	if (!Number.isInteger(n) || n < 0) {
		console.error(`--${name} needs a whole number`);
		process.exit(2);
	}
	return n;
}

/** --port, else 8080 when free, else any free port (printed with the other addresses). */
async function shopPort(say: (l: string) => void): Promise<number> {
	if (process.argv.includes("--port")) return arg("port", 8080);
	const free = await new Promise<boolean>(resolve => {
		const s = require("node:net").createServer();
		s.once("error", () => resolve(false));
		s.listen(8080, "127.0.0.1", () => s.close(() => resolve(true)));
	});
	if (!free) say("port 8080 is taken: HAProxy listens on another (below)");
	return free ? 8080 : 0;
}

async function main(): Promise<void> {
	const dirIdx = process.argv.indexOf("--dir");
	const runDir = dirIdx >= 0 ? path.resolve(process.argv[dirIdx + 1]) : path.join(os.tmpdir(), "dopamine-cluster");
	const say = (l: string) => console.log(l);
	if (process.argv.includes("--down")) {
		const n = await downFromPidFile(runDir, say);
		say(n ? `cluster in ${runDir} stopped (${n} processes)` : `no running cluster in ${runDir}`);
		return;
	}
	const gateways = arg("gateways", 2);
	const workers = arg("workers", 2);
	if (gateways < 1 || workers < 1) {
		console.error("--gateways and --workers must be at least 1");
		process.exit(2);
	}
	ensurePackages(say);
	const storeEnv: Record<string, string> = {};
	for (const [k, v] of Object.entries(process.env)) if (v !== undefined && PASSED.test(k)) storeEnv[k] = v;
	const cluster = await startCluster({
		gateways,
		workers,
		runDir,
		port: await shopPort(say),
		databaseUrl: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/dopamine_cluster",
		storeEnv,
		natsUser: process.env.NATS_USER,
		natsPassword: process.env.NATS_PASSWORD,
		log: say,
	});
	say("\nDopamine Store cluster is up:");
	for (const line of cluster.addresses()) say(`  ${line}`);
	say("\nCtrl-C (or `npm run cluster -- --down` elsewhere) stops everything.");
	let stopping = false;
	const stop = async () => {
		if (stopping) return;
		stopping = true;
		say("\nstopping the cluster...");
		await cluster.stop();
		say("stopped.");
		process.exit(0);
	};
	process.on("SIGINT", stop);
	process.on("SIGTERM", stop);
	// A process that dies on its own is reported (the cluster goes on without it).
	for (const p of [...cluster.nats, cluster.pgbouncer, cluster.haproxy, ...cluster.gateways, ...cluster.workers])
		p.proc.once("exit", (code, signal) => !stopping && say(`${p.name} exited (${code ?? signal}); see ${path.join(runDir, `${p.name}.log`)}`));
}

main().catch(err => {
	console.error(`cluster: ${err?.message ?? err}`);
	process.exit(1);
});
