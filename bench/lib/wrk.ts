import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/**
 * Throughput measured from outside: wrk (C, one thread) drives the server, and the CPU time of
 * the server's processes and of wrk itself is read from /proc around the run. A Node load
 * generator on the same two cores saturated before the servers did, so every throughput row of
 * the benchmark comes from here; the Node generator (load.ts) keeps the sale checks and the
 * open-loop latency runs, which need each answer's body and a schedule.
 */
export const WRK = process.env.WRK_BIN ?? "/usr/bin/wrk";
const SCRIPT = path.join(__dirname, "..", "..", "..", "bench", "wrk", "claims.lua");
const TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux

/** wrk comes from Debian's package; installed here when missing (the bench runs as root in CI). */
export function ensureWrk(): void {
	if (fs.existsSync(WRK)) return;
	process.stderr.write("[bench] wrk is missing: apt-get update && apt-get install -y wrk\n");
	const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
	// A fresh machine has no package lists yet: install would find nothing without them.
	execFileSync("apt-get", ["update", "-qq"], { stdio: ["ignore", "ignore", "inherit"], env });
	execFileSync("apt-get", ["install", "-y", "--no-install-recommends", "wrk"], { stdio: ["ignore", "ignore", "inherit"], env });
}

/** utime + stime of a process, in ms (fields 14 and 15 of /proc/PID/stat, after the command name). */
export function cpuMs(pid: number | "self"): number {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
	const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS_PER_SECOND;
}

/** CPU of this process's children that have exited and been reaped (cutime + cstime), in ms. */
function reapedChildrenCpuMs(): number {
	const stat = fs.readFileSync(`/proc/self/stat`, "utf8");
	const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
	return ((Number(f[13]) + Number(f[14])) * 1000) / TICKS_PER_SECOND;
}

export interface WrkResult {
	requests: number;
	seconds: number;
	rps: number;
	latency: { p50: number; p99: number; max: number };
	/** Connect, read, write errors and timeouts, as wrk counts them. */
	errors: number;
	timeouts: number;
	/** Answers that were not 2xx/3xx. */
	non2xx: number;
	/** By HTTP status, when counted (`count: true`). */
	statuses: Record<string, number>;
	/** CPU ms each watched server process spent during the run. */
	serverCpuMs: number[];
	/** CPU ms wrk spent, and whether it was the limit (a one-thread wrk busy ≥ 90% of the run). */
	generatorCpuMs: number;
	generatorSaturated: boolean;
}

export interface WrkOptions {
	url: string;
	path: string;
	/** One bearer token per line. */
	tokensFile: string;
	connections: number;
	seconds: number;
	threads?: number;
	/** Server processes whose CPU time is read around the run. */
	pids: number[];
	/** Count answers by status in wrk's Lua (costs the generator CPU; for warm-ups and checks). */
	count?: boolean;
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
	ensureWrk();
	const threads = o.threads ?? 1;
	const args = [`-t${threads}`, `-c${o.connections}`, `-d${o.seconds}s`, "--timeout", "10s", "-s", SCRIPT, o.url, "--", o.tokensFile, o.path];
	const before = o.pids.map(pid => cpuMs(pid));
	const genBefore = reapedChildrenCpuMs();
	const out = await new Promise<string>((resolve, reject) => {
		const p = spawn(WRK, args, { env: { ...process.env, WRK_COUNT: o.count ? "1" : "0" }, stdio: ["ignore", "pipe", "pipe"] });
		let stdout = "";
		let stderr = "";
		p.stdout.on("data", d => (stdout += d));
		p.stderr.on("data", d => (stderr += d));
		p.on("error", reject);
		p.on("close", code => (code === 0 ? resolve(stdout) : reject(new Error(`wrk exited ${code}: ${stderr || stdout}`))));
	});
	const serverCpuMs = o.pids.map((pid, i) => cpuMs(pid) - before[i]);
	const generatorCpuMs = reapedChildrenCpuMs() - genBefore;
	const line = out.split("\n").find(l => l.startsWith("WRK_RESULT "));
	if (!line) throw new Error(`wrk printed no result:\n${out}`);
	const r = JSON.parse(line.slice("WRK_RESULT ".length));
	const seconds = r.duration_us / 1e6;
	return {
		requests: r.requests,
		seconds,
		rps: r.requests / seconds,
		latency: { p50: r.p50_us / 1000, p99: r.p99_us / 1000, max: r.max_us / 1000 },
		errors: r.connect_errors + r.read_errors + r.write_errors + r.timeouts,
		timeouts: r.timeouts,
		non2xx: r.status_errors,
		statuses: r.statuses,
		serverCpuMs,
		generatorCpuMs,
		generatorSaturated: generatorCpuMs >= 0.9 * threads * seconds * 1000,
	};
}

/** Writes tokens one per line for the wrk script; returns the file. */
export function tokensFile(dir: string, name: string, tokens: string[]): string {
	const file = path.join(dir, `${name}.tokens`);
	fs.writeFileSync(file, tokens.join("\n") + "\n");
	return file;
}
