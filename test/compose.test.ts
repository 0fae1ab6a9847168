import fs from "node:fs";
import path from "node:path";
import { parse } from "yaml";

/** No Docker engine runs here: docker-compose.yml is checked by parsing it. */
describe("docker-compose.yml", () => {
	const file = parse(fs.readFileSync(path.join(__dirname, "..", "docker-compose.yml"), "utf8"), { merge: true });

	it("describes the store's cluster and what it stands on", () => {
		expect(Object.keys(file.services)).toEqual(
			expect.arrayContaining(["postgres", "redis", "nats", "gateway-1", "gateway-2", "core-1", "prometheus", "grafana"])
		);
	});

	it("gives every store node the cluster settings and a service list it can run", () => {
		for (const name of ["gateway-1", "gateway-2", "core-1"]) {
			const env = file.services[name].environment;
			expect(env).toMatchObject({ TRANSPORTER: "nats://nats:4222", REDIS_URL: "redis://redis:6379" });
			expect(env.JWT_SECRET).toMatch(/JWT_SECRET/);
			for (const s of String(env.SERVICES).split(",")) expect(["api", "users", "products"]).toContain(s);
		}
	});

	it("scrapes every node's metrics port", () => {
		const prom = parse(fs.readFileSync(path.join(__dirname, "..", "config", "prometheus.yml"), "utf8"));
		expect(prom.scrape_configs[0].static_configs[0].targets).toEqual(["gateway-1:3030", "gateway-2:3030", "core-1:3030"]);
	});
});
