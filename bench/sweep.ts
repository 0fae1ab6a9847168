import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { CLAIM_PATH, createProduct, granted, readyForSale, withStore, wrkRun } from "./run";

/**
 * npm run bench:sweep [-- --connections 100,1000,5000 --seconds 10 --buyers 150000]: grants on one
 * product at several connection counts, one store process, measured from outside with wrk. Each
 * row is a fresh product with a stock of every seeded buyer, so every claim is a grant while the
 * buyers last. Prints one JSON line per row (req/s, p50, p99, store CPU µs per grant, grants in
 * PostgreSQL afterwards). Used to find where the grant path bends with depth (issue 20).
 */
async function main() {
	const { values } = parseArgs({
		options: { connections: { type: "string", default: "100,1000,5000" }, seconds: { type: "string", default: "10" }, buyers: { type: "string", default: "150000" } },
	});
	const conns = values.connections!.split(",").map(Number);
	const seconds = Number(values.seconds);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sweep-"));
	await withStore(Number(values.buyers), dir, async rig => {
		const url = rig.store.targets[0];
		for (const c of conns) {
			const product = await createProduct(rig, rig.buyers.length);
			await readyForSale(rig, product);
			const g = await wrkRun(url, CLAIM_PATH(product), rig.tokens, rig.store.pids, seconds, c);
			await new Promise(res => setTimeout(res, 1000));
			const inDb = await granted(rig.databaseUrl, product);
			const answered = g.requests - g.non2xx;
			const cpu = g.serverCpuMs.reduce((a, b) => a + b, 0);
			console.log(JSON.stringify({ connections: c, rps: Math.round(g.rps), grants: answered, non2xx: g.non2xx, errors: g.errors, timeouts: g.timeouts, p50: g.latency.p50, p99: g.latency.p99, cpuUsPerAnswer: Math.round((cpu * 1000) / Math.max(1, g.requests)), inDb }));
		}
	});
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
