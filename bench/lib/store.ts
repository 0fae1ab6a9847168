import { ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

/** Starts the store's own processes (node dist/server.js) for a load run, and watches their memory. */
export interface StoreProcesses {
	targets: string[];
	pids: number[];
	/** Peak resident memory of each process so far, in MB (VmHWM). */
	peakMemoryMb(): number[];
	stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.once("error", reject);
		s.listen(0, "127.0.0.1", () => {
			const { port } = s.address() as net.AddressInfo;
			s.close(() => resolve(port));
		});
	});
}

export function peakRssMb(pid: number): number {
	try {
		const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
		return m ? Number(m[1]) / 1024 : 0;
	} catch {
		return 0;
	}
}

/** Polls until `probe` holds; a store starting on a loaded machine may take a while, hence a minute. */
export async function waitUntil(what: string, probe: () => Promise<boolean>, ms = 60_000): Promise<void> {
	const deadline = Date.now() + ms;
	while (Date.now() < deadline) {
		if (await probe().catch(() => false)) return;
		await new Promise(r => setTimeout(r, 100));
	}
	throw new Error(`timed out waiting for ${what}`);
}

const SERVER = path.join(__dirname, "..", "..", "server.js");

/**
 * `apiProcesses` = 1: one process with every service, no transporter. 2: a second process that
 * runs only `api`, talking to the first over NATS.
 */
export async function startStore(opts: {
	apiProcesses: number;
	databaseUrl: string;
	jwtSecret: string;
	natsUrl?: string;
	extraEnv?: Record<string, string>;
	/** Another build's dist/server.js, for comparing builds in one run (bench/compare.ts). */
	server?: string;
}): Promise<StoreProcesses> {
	const namespace = `load-${process.pid}-${Date.now()}`;
	const cluster = opts.apiProcesses > 1;
	const procs: ChildProcess[] = [];
	const targets: string[] = [];
	const stop = async () => {
		await Promise.all(
			procs.map(p =>
				p.exitCode !== null || p.signalCode !== null
					? Promise.resolve()
					: new Promise<void>(resolve => {
							p.once("exit", () => resolve());
							p.kill("SIGTERM");
							setTimeout(() => p.kill("SIGKILL"), 5000).unref();
						})
			)
		);
	};
	/**
	 * One store process on a free port. The port is free when picked, not when the store binds it:
	 * another process (a parallel test's store) may take it first. So the process is ready only
	 * when the port answers with its own node id, and one that exits (port taken) is started again
	 * on another port.
	 */
	const startOne = async (i: number): Promise<void> => {
		const nodeId = `${namespace}-${i}`;
		for (let attempt = 1; ; attempt++) {
			const port = await freePort();
			const env: Record<string, string> = {
				PATH: process.env.PATH ?? "",
				DATABASE_URL: opts.databaseUrl,
				JWT_SECRET: opts.jwtSecret,
				PORT: String(port),
				METRICS_PORT: "0",
				LOG_LEVEL: "error",
				NODE_ID: nodeId,
				// A load run has one claim per buyer; the flood limit is not what is measured.
				CLAIM_RATE_PER_SECOND: "1000",
				// NATS_ALLOW_ANONYMOUS: the default is the local NATS on loopback; a natsUrl with a login uses it.
				...(cluster ? { TRANSPORTER: opts.natsUrl ?? "nats://127.0.0.1:4222", NAMESPACE: namespace, NATS_ALLOW_ANONYMOUS: "true" } : {}),
				...(i > 0 ? { SERVICES: "api" } : {}),
				...opts.extraEnv,
			};
			// For profiling a run: STORE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
			const nodeArgs = process.env.STORE_NODE_ARGS ? process.env.STORE_NODE_ARGS.split(" ") : [];
			const p = spawn(process.execPath, [...nodeArgs, opts.server ?? SERVER], { env, stdio: ["ignore", "ignore", "inherit"] });
			procs.push(p);
			const target = `http://127.0.0.1:${port}`;
			// Health says 200 only once every local service has started: a service is callable only
			// after its own `started` (users hashes the first admin's password there, slow on a loaded
			// machine), so the product list can answer while an admin's create still meets
			// SERVICE_UNAVAILABLE from the users service.
			const ours = async () =>
				(await (await fetch(`${target}/metrics`)).text()).includes(`nodeID="${nodeId}"`) && (await fetch(`${target}/api/health`)).status === 200 && (await fetch(`${target}/api/products`)).status === 200;
			const exited = () => p.exitCode !== null || p.signalCode !== null;
			await waitUntil(`${target} (${nodeId}) to serve`, async () => exited() || (await ours()));
			if (!exited()) {
				targets.push(target);
				return;
			}
			procs.splice(procs.indexOf(p), 1);
			if (attempt === 3) throw new Error(`store ${nodeId} exited at start three times (last port ${port})`);
		}
	};
	try {
		for (let i = 0; i < opts.apiProcesses; i++) await startOne(i);
	} catch (err) {
		await stop();
		throw err;
	}
	return {
		targets,
		pids: procs.map(p => p.pid!),
		peakMemoryMb: () => procs.map(p => peakRssMb(p.pid!)),
		stop,
	};
}

/**
 * A POST as a well-made client sends it: a 503 SERVICE_UNAVAILABLE (the service had no endpoint
 * yet: the call reached no handler, so nothing was done) is sent again after its Retry-After, for
 * up to 30 s. Seen right after a store started on a loaded machine, for an admin's first create,
 * when the load tool still waited for the product list and not for health.
 */
export async function postWhenAvailable(url: string, init: RequestInit): Promise<Response> {
	for (let i = 0; ; i++) {
		const res = await fetch(url, init);
		if (res.status !== 503 || i >= 30) return res;
		const text = await res.text();
		if (!text.includes('"SERVICE_UNAVAILABLE"')) return new Response(text, { status: res.status, headers: res.headers });
		await new Promise(r => setTimeout(r, Number(res.headers.get("retry-after") ?? 1) * 1000));
	}
}
