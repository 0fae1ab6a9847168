import http from "node:http";
import net from "node:net";

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

export interface OpenLoopOptions extends LoadOptions {
	/** Claims per second, all targets together: claim i is due at i / rate seconds after the start. */
	rate: number;
}

export interface OpenLoopResult extends LoadResult {
	/** Claims sent more than 5 ms after their scheduled time (timers fire every ms or so; beyond that the generator was behind). */
	lateSends: number;
	/** CPU ms this process (the generator) spent during the run. */
	generatorCpuMs: number;
}

interface Pending {
	i: number;
	due: number;
	timer: NodeJS.Timeout | null;
}

/**
 * Open loop, no coordinated omission: claim i is sent at its scheduled time, start + i / rate,
 * whatever the earlier claims' fate, and its latency counts from that time, so a server (or a
 * connection pool) that falls behind shows as queueing instead of slowing the generator down.
 * Plain keep-alive sockets with a minimal HTTP/1.1 reader (the store's answers carry a
 * Content-Length): about a tenth of node:http's cost per request, so the generator stays light.
 * At most `connections` sockets per target; a claim due while all are busy waits for one, and
 * that wait is part of its latency.
 */
export async function fireOpen(shots: Shot[], opts: OpenLoopOptions): Promise<OpenLoopResult> {
	const timeoutMs = opts.timeoutMs ?? 10_000;
	const perTarget = Math.max(1, Math.ceil(opts.connections / opts.targets.length));
	const latencies = new Float64Array(shots.length);
	const statuses: Record<string, number> = {};
	let answered = 0;
	let errors = 0;
	let timeouts = 0;
	let lateSends = 0;
	let next = 0;
	const cpu0 = process.cpuUsage();
	const t0 = performance.now();
	const urls = opts.targets.map(t => new URL(t));

	let finish: () => void = () => undefined;
	const allDone = new Promise<void>(r => (finish = r));
	const settle = (p: Pending, status: number, body: string) => {
		if (p.timer) clearTimeout(p.timer);
		const ms = performance.now() - p.due;
		latencies[p.i] = ms;
		if (status === 0) errors++;
		else statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
		answered++;
		opts.onHit?.(p.i, { status, body, ms });
		if (answered === shots.length) finish();
	};

	class Conn {
		socket: net.Socket;
		buf = "";
		current: Pending | null = null;
		open = false;
		constructor(readonly pool: Pool) {
			const u = pool.url;
			this.socket = net.connect({ host: u.hostname, port: Number(u.port), noDelay: true });
			this.socket.setEncoding("latin1");
			pool.connecting++;
			this.socket.on("connect", () => {
				this.open = true;
				this.pool.connecting--;
				this.pool.ready(this);
			});
			this.socket.on("data", (d: string) => this.read(d));
			const broken = () => this.broken();
			this.socket.on("error", broken);
			this.socket.on("close", broken);
		}
		send(p: Pending) {
			this.current = p;
			const s = shots[p.i];
			let head = `${s.method} ${s.path} HTTP/1.1\r\nHost: ${this.pool.url.host}\r\nContent-Length: 0\r\n`;
			if (s.headers) for (const k in s.headers) head += `${k}: ${s.headers[k]}\r\n`;
			this.socket.write(head + "\r\n", "latin1");
			p.timer = setTimeout(() => {
				timeouts++;
				this.socket.destroy();
			}, timeoutMs);
		}
		read(d: string) {
			this.buf += d;
			for (;;) {
				const end = this.buf.indexOf("\r\n\r\n");
				if (end < 0) return;
				const m = /\r\ncontent-length:\s*(\d+)/i.exec(this.buf.slice(0, end + 2));
				if (!m) return this.socket.destroy(new Error("an answer without Content-Length"));
				const total = end + 4 + Number(m[1]);
				if (this.buf.length < total) return;
				const status = Number(this.buf.slice(9, 12));
				const body = opts.keepBodies ? Buffer.from(this.buf.slice(end + 4, total), "latin1").toString("utf8") : "";
				this.buf = this.buf.slice(total);
				const p = this.current;
				this.current = null;
				if (p) settle(p, status, body);
				this.pool.ready(this);
			}
		}
		broken() {
			if (!this.pool.conns.has(this)) return;
			this.pool.conns.delete(this);
			const p = this.current;
			this.current = null;
			if (p) settle(p, 0, "");
			if (!this.open) {
				// Could not connect: the claim that asked for this connection fails, rather than retrying forever.
				this.pool.connecting--;
				const waiting = this.pool.waiting.shift();
				if (waiting) settle(waiting, 0, "");
			}
			this.pool.idle = this.pool.idle.filter(c => c !== this);
			this.pool.pump();
		}
	}

	class Pool {
		conns = new Set<Conn>();
		idle: Conn[] = [];
		waiting: Pending[] = [];
		connecting = 0;
		constructor(readonly url: URL) {}
		submit(p: Pending) {
			this.waiting.push(p);
			this.pump();
		}
		ready(c: Conn) {
			if (!this.conns.has(c)) return;
			this.idle.push(c);
			this.pump();
		}
		pump() {
			while (this.waiting.length && this.idle.length) this.idle.pop()!.send(this.waiting.shift()!);
			let want = this.waiting.length - this.connecting;
			while (want-- > 0 && this.conns.size < perTarget) this.conns.add(new Conn(this));
		}
	}
	const pools = urls.map(u => new Pool(u));

	let last = { t: t0, answered: 0 };
	const ticker = opts.onProgress
		? setInterval(() => {
				const now = performance.now();
				opts.onProgress!({ sent: next, answered, rps: ((answered - last.answered) * 1000) / Math.max(1, now - last.t) });
				last = { t: now, answered };
			}, 250)
		: null;

	const interval = 1000 / opts.rate;
	const tick = () => {
		const now = performance.now();
		while (next < shots.length && t0 + next * interval <= now) {
			const due = t0 + next * interval;
			if (now - due > 5) lateSends++;
			pools[shots[next].target].submit({ i: next, due, timer: null });
			next++;
		}
		if (next < shots.length) setTimeout(tick, Math.max(0, t0 + next * interval - performance.now()));
	};
	if (shots.length) tick();
	else finish();
	await allDone;
	if (ticker) clearInterval(ticker);
	for (const pool of pools) for (const c of pool.conns) c.socket.destroy();
	const seconds = (performance.now() - t0) / 1000;
	const cpu = process.cpuUsage(cpu0);
	const sorted = latencies.slice().sort();
	return {
		requests: shots.length,
		seconds,
		rps: shots.length / seconds,
		latency: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? 0 },
		statuses,
		errors,
		timeouts,
		lateSends,
		generatorCpuMs: (cpu.user + cpu.system) / 1000,
	};
}
