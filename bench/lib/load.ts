import http from "node:http";

/**
 * A closed-loop HTTP load generator: `connections` keep-alive connections, each sending its next
 * request as soon as the last one is answered. Latency is measured per request. Used by the load
 * tool and by every run of the benchmark, so all figures come from the same generator.
 */
export interface Shot {
	/** Index into `targets`. */
	target: number;
	method: string;
	path: string;
	headers?: Record<string, string>;
}

export interface Hit {
	status: number;
	body: string;
	ms: number;
}

export interface LoadResult {
	requests: number;
	seconds: number;
	rps: number;
	latency: { p50: number; p99: number; max: number };
	statuses: Record<string, number>;
	errors: number;
	timeouts: number;
}

export interface LoadOptions {
	targets: string[];
	connections: number;
	timeoutMs?: number;
	/** Called with each answer (index of the shot, the answer). */
	onHit?(i: number, hit: Hit): void;
	/** Called about 4 times a second with the running totals. */
	onProgress?(p: { sent: number; answered: number; rps: number }): void;
	/** Keep response bodies (needed to read outcomes); off for pure throughput runs. */
	keepBodies?: boolean;
}

export function percentile(sorted: Float64Array, p: number): number {
	if (sorted.length === 0) return 0;
	return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export async function fire(shots: Shot[], opts: LoadOptions): Promise<LoadResult> {
	const timeoutMs = opts.timeoutMs ?? 10_000;
	const agents = opts.targets.map(() => new http.Agent({ keepAlive: true, maxSockets: Math.ceil(opts.connections / opts.targets.length) + 1 }));
	const urls = opts.targets.map(t => new URL(t));
	const latencies = new Float64Array(shots.length);
	const statuses: Record<string, number> = {};
	let next = 0;
	let answered = 0;
	let errors = 0;
	let timeouts = 0;
	const started = process.hrtime.bigint();
	let lastTick = { t: Date.now(), answered: 0 };
	const ticker = opts.onProgress
		? setInterval(() => {
				const now = Date.now();
				const rps = ((answered - lastTick.answered) * 1000) / Math.max(1, now - lastTick.t);
				lastTick = { t: now, answered };
				opts.onProgress!({ sent: next, answered, rps });
			}, 250)
		: null;

	const one = (i: number): Promise<void> =>
		new Promise(resolve => {
			const shot = shots[i];
			const u = urls[shot.target];
			const t0 = process.hrtime.bigint();
			const req = http.request(
				{ host: u.hostname, port: u.port, method: shot.method, path: shot.path, headers: shot.headers, agent: agents[shot.target], timeout: timeoutMs },
				res => {
					const chunks: Buffer[] = [];
					res.on("data", c => opts.keepBodies && chunks.push(c));
					res.on("end", () => {
						const ms = Number(process.hrtime.bigint() - t0) / 1e6;
						latencies[i] = ms;
						const key = String(res.statusCode);
						statuses[key] = (statuses[key] ?? 0) + 1;
						answered++;
						opts.onHit?.(i, { status: res.statusCode ?? 0, body: opts.keepBodies ? Buffer.concat(chunks).toString() : "", ms });
						resolve();
					});
				}
			);
			req.on("timeout", () => {
				timeouts++;
				req.destroy(new Error("timeout"));
			});
			req.on("error", () => {
				latencies[i] = Number(process.hrtime.bigint() - t0) / 1e6;
				errors++;
				answered++;
				opts.onHit?.(i, { status: 0, body: "", ms: latencies[i] });
				resolve();
			});
			req.end();
		});

	const loop = async () => {
		while (next < shots.length) await one(next++);
	};
	await Promise.all(Array.from({ length: Math.min(opts.connections, shots.length) }, loop));
	if (ticker) clearInterval(ticker);
	for (const a of agents) a.destroy();
	const seconds = Number(process.hrtime.bigint() - started) / 1e9;
	const sorted = latencies.slice().sort();
	return {
		requests: shots.length,
		seconds,
		rps: shots.length / seconds,
		latency: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? 0 },
		statuses,
		errors,
		timeouts,
	};
}
