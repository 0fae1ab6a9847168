import http from "node:http";
import { timingSafeEqual } from "node:crypto";
import { MetricReporters } from "moleculer";

/**
 * Metrics that describe the host rather than the store (hostname, OS user and home directory,
 * network addresses and MAC, OS release, CPU model, the process's arguments): never reported.
 */
export const HOST_DETAILS = ["os.hostname", "os.user.*", "os.network.*", "os.type", "os.release", "os.cpu.info.**", "process.arguments"];

/** `Authorization: Bearer <token>`, compared in constant time; with no token configured, nothing is. */
export function bearerIs(req: http.IncomingMessage, token: string): boolean {
	const given = Buffer.from(req.headers.authorization ?? "");
	const wanted = Buffer.from(`Bearer ${token}`);
	return given.length === wanted.length && timingSafeEqual(given, wanted);
}

/**
 * Moleculer's Prometheus reporter with two changes: METRICS_PORT=0 means "no listener of its
 * own" (the gateway's /metrics still works), a taken port is a warning instead of
 * broker.fatal(), so a second node on one machine never dies of it, it listens on METRICS_HOST
 * (loopback by default) and, with METRICS_TOKEN, answers only that bearer token (401 otherwise).
 */
const Prometheus = MetricReporters.Prometheus as unknown as new (opts: object) => any;
const BaseInit = (MetricReporters.Base as any).prototype.init as (this: any, registry: unknown) => void;

export class StorePrometheusReporter extends Prometheus {
	init(this: any, registry: any): void {
		BaseInit.call(this, registry);
		const labels = this.opts.defaultLabels;
		this.defaultLabels = typeof labels === "function" ? labels.call(this, registry) : labels;
		if (this.opts.port === 0) return;
		const token: string | null = this.opts.token ?? null;
		const handler = this.handler.bind(this);
		this.server = http.createServer((req, res) => {
			if (token && !bearerIs(req, token)) {
				res.writeHead(401, { "Content-Type": "text/plain; charset=utf-8", "WWW-Authenticate": "Bearer" });
				return void res.end("metrics need the METRICS_TOKEN bearer token\n");
			}
			handler(req, res);
		});
		this.server.on("error", (err: Error) =>
			this.logger.warn(`Metrics listener on port ${this.opts.port} not started (${err.message}); /metrics on the gateway still works.`)
		);
		this.server.listen(this.opts.port, this.opts.host, () =>
			this.logger.info(`Prometheus metrics on port ${this.server.address().port}${this.opts.path}`)
		);
	}

	stop(this: any): Promise<void> {
		if (!this.server?.listening) return Promise.resolve();
		return new Promise(resolve => this.server.close(() => resolve()));
	}
}

/** The Prometheus text of a broker's metrics, for the gateway's /metrics. */
export function prometheusText(broker: { metrics: any }): string | null {
	const reporters: any[] = broker.metrics?.reporter ?? [];
	const r = reporters.find(x => typeof x.generatePrometheusResponse === "function");
	return r ? r.generatePrometheusResponse() : null;
}
