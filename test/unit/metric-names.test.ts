import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { METRIC_DEFINITIONS, METRICS } from "../../lib/store-metrics";

/**
 * Issue 24, point 2: lib/store-metrics.ts names every metric the store registers. ops/'s
 * dashboards, alerts and Prometheus configuration, and the docs, cannot import it: every store
 * metric they name (Prometheus's form, dots as underscores) must be one it defines.
 */
const root = join(__dirname, "..", "..");
const dashboards = join(root, "ops", "grafana", "dashboards");
const docs = join(root, "docs");
const files = [
	join(root, "ops", "alerts.yml"),
	join(root, "ops", "prometheus.yml"),
	...readdirSync(dashboards).filter(f => f.endsWith(".json")).map(f => join(dashboards, f)),
	join(root, "README.md"),
	...readdirSync(docs).filter(f => f.endsWith(".md")).map(f => join(docs, f)),
];

const prometheus = (name: string) => name.replace(/\./g, "_");

describe("metric names", () => {
	it("are defined once each, with their help", () => {
		const defined = METRIC_DEFINITIONS.map(d => d.name);
		expect(new Set(defined).size).toBe(defined.length);
		expect([...defined].sort()).toEqual(Object.values(METRICS).sort());
		for (const d of METRIC_DEFINITIONS) expect([d.name, d.description.length > 10]).toEqual([d.name, true]);
	});

	it("used in ops/ and the docs are the registry's", () => {
		const known = new Map(METRIC_DEFINITIONS.map(d => [prometheus(d.name), d.type]));
		const unknown: string[] = [];
		let seen = 0;
		for (const file of files)
			// Not after a "/": a database name in a URL (postgres://…/dopamine_cluster) is no metric.
			for (const [name] of readFileSync(file, "utf8").matchAll(/(?<![/\w])dopamine_[a-z_]+/g)) {
				seen++;
				const histogram = name.match(/^(.*)_(bucket|sum|count)$/);
				if (known.has(name) || (histogram && known.get(histogram[1]) === "histogram")) continue;
				unknown.push(`${file.slice(root.length + 1)}: ${name}`);
			}
		expect(unknown).toEqual([]);
		// The scan reads what it should: the dashboard and the alerts name a dozen of them.
		expect(seen).toBeGreaterThan(10);
	});
});
