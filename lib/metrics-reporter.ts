import http from "node:http";
import { MetricReporters } from "moleculer";

/**
 * Moleculer's Prometheus reporter with two changes: METRICS_PORT=0 means "no listener of its
 * own" (the gateway's /metrics still works), and a taken port is a warning instead of
 * broker.fatal(), so a second node on one machine never dies of it.
 */
const Prometheus = MetricReporters.Prometheus as unknown as new (opts: object) => any;
const BaseInit = (MetricReporters.Base as any).prototype.init as (this: any, registry: unknown) => void;

export class StorePrometheusReporter extends Prometheus {
	init(this: any, registry: any): void {
		BaseInit.call(this, registry);
		const labels = this.opts.defaultLabels;
		this.defaultLabels = typeof labels === "function" ? labels.call(this, registry) : labels;
		if (this.opts.port === 0) return;
		this.server = http.createServer(this.handler.bind(this));
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
