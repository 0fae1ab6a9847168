import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { SERVICES } from "../broker";
import { ensureWrk } from "./lib/wrk";
import { bare, Figure, grantRun, Sizes, soldOutRun, withStore, wrkFigure } from "./run";

/**
 * npm run build && node dist/bench/compare.js [--build NAME=PATH/dist/server.js ...] [--rounds 3]
 *
 * The claim path of several builds, measured the same way in one run: run.ts's sold-out and
 * grant rows (wrk, 100 connections, a different buyer's token each claim), plus the bare server
 * for scale. The builds take turns round by round (bare, A, B, C, bare, A, B, C, ...), so a
 * machine that drifts during the run drifts under all of them alike, and each figure reported is
 * the median of its rounds.
 *
 * Always measured: this build ("main") and this build without the notifier service ("main,
 * notifier off"), which is issue 11's "before and after" for the notifier. `--build` adds another
 * build, such as the seed's (issue 10's "before": `git worktree add /tmp/base ac0eb7f`, then
 * `npm ci && npx tsc -p tsconfig.build.json` there). Writes bench/COMPARE.md and compare.json, with
 * bench/COMPARE-NOTES.md appended; `--render` rewrites COMPARE.md from compare.json alone.
 */

interface Build {
	name: string;
	server?: string;
	extraEnv?: Record<string, string>;
}

interface Round {
	build: string;
	soldOut: Figure;
	grants: Figure;
}

const median = (xs: number[]) => {
	const s = [...xs].sort((a, b) => a - b);
	return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function say(line: string) {
	process.stderr.write(`[compare] ${line}\n`);
}

/** The same two rows as run.ts's storeRows, on one build. */
async function measure(build: Build, sz: Sizes, dir: string, connections: number): Promise<Round> {
	return withStore(
		sz.buyers,
		dir,
		async rig => {
			const {
				runs: [s],
			} = await soldOutRun(rig, sz, connections);
			const soldOut = wrkFigure("sold-out", `${build.name}: sold-out answer`, s, { SOLD_OUT: s.non2xx, ...(s.requests - s.non2xx ? { "HTTP 2xx": s.requests - s.non2xx } : {}) });
			const { g, inDb } = await grantRun(rig, sz, connections);
			const grants = wrkFigure("grants", `${build.name}: every claim a grant`, g, { GRANTED: g.requests - g.non2xx, ...(g.non2xx ? { "not granted": g.non2xx } : {}) }, `PostgreSQL holds ${inDb} grants`);
			// A build that answered "granted" without the row would look fast for the wrong reason.
			if (inDb < g.requests - g.non2xx) throw new Error(`${build.name}: ${g.requests - g.non2xx} grants answered, ${inDb} in PostgreSQL`);
			if (g.non2xx) throw new Error(`${build.name}: ${g.non2xx} claims were not granted (${JSON.stringify(g.statuses)})`);
			return { build: build.name, soldOut, grants };
		},
		{ server: build.server, extraEnv: build.extraEnv }
	);
}

function markdown(builds: Build[], bares: Figure[], rounds: Round[], meta: Record<string, unknown>): string {
	const bareRps = median(bares.map(b => b.rps));
	const bareCpu = median(bares.map(b => b.cpuMsPer1000 ?? NaN));
	const f1 = (x: number) => x.toFixed(1);
	const f0 = (x: number) => Math.round(x).toLocaleString("en");
	const of = (name: string) => rounds.filter(r => r.build === name);
	const row = (name: string, pick: (r: Round) => Figure) => {
		const fs_ = of(name).map(pick);
		const rps = median(fs_.map(x => x.rps));
		const cpu = median(fs_.map(x => x.cpuMsPer1000 ?? NaN));
		return `| ${name} | ${f0(rps)} | ${(rps / bareRps).toFixed(2)} | ${f1(median(fs_.map(x => x.p50)))} | ${f1(median(fs_.map(x => x.p99)))} | ${f1(cpu)} | ${fs_.map(x => f0(x.rps)).join(" / ")} |`;
	};
	const head = "| build | req/s (median) | × bare | p50 ms | p99 ms | CPU ms per 1,000 answers | each round's req/s |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |";
	return [
		"# Builds compared on the claim path",
		"",
		`Run ${meta.date} on ${meta.machine}; ${meta.rounds} rounds, builds in turn within each round; wrk \`-t1 -c${meta.connections} -d${meta.seconds}s\`,`,
		"a different buyer's token each claim, one store process with every service (no transporter). Produced by",
		"`node dist/bench/compare.js` (bench/compare.ts). Medians of the rounds.",
		"",
		`Bare Node http server, same run: ${f0(bareRps)} req/s, ${f1(bareCpu)} ms CPU per 1,000 answers (rounds: ${bares.map(b => f0(b.rps)).join(" / ")}).`,
		"",
		"## Sold-out answers",
		"",
		head,
		...builds.map(b => row(b.name, r => r.soldOut)),
		"",
		"## Every claim a grant",
		"",
		head,
		...builds.map(b => row(b.name, r => r.grants)),
		"",
		"Builds:",
		...builds.map(b => `- **${b.name}**: ${b.server ? `\`${b.server}\`` : "this checkout's dist/server.js"}${b.extraEnv ? `, ${Object.entries(b.extraEnv).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""}`),
		"",
		String(meta.notes ?? ""),
	].join("\n");
}

async function main() {
	const { values } = parseArgs({
		options: {
			build: { type: "string", multiple: true, default: [] },
			rounds: { type: "string", default: "3" },
			seconds: { type: "string", default: "10" },
			connections: { type: "string", default: "100" },
			out: { type: "string" },
			render: { type: "boolean", default: false },
		},
	});
	const outDir = values.out ?? path.join(__dirname, "..", "..", "bench");
	const notesFile = path.join(__dirname, "..", "..", "bench", "COMPARE-NOTES.md");
	if (values.render) {
		// Re-renders COMPARE.md from compare.json (after editing COMPARE-NOTES.md), measuring nothing.
		const saved = JSON.parse(fs.readFileSync(path.join(outDir, "compare.json"), "utf8"));
		saved.meta.notes = fs.existsSync(notesFile) ? fs.readFileSync(notesFile, "utf8") : "";
		fs.writeFileSync(path.join(outDir, "COMPARE.md"), markdown(saved.builds, saved.bares, saved.rounds, saved.meta));
		return;
	}
	ensureWrk();
	const withoutNotifier = Object.keys(SERVICES).filter(s => s !== "notifier").join(",");
	const builds: Build[] = [
		...values.build!.map(spec => {
			const at = spec.indexOf("=");
			if (at < 1) throw new Error(`--build wants NAME=PATH/dist/server.js, got ${spec}`);
			const server = path.resolve(spec.slice(at + 1));
			if (!fs.existsSync(server)) throw new Error(`--build ${spec}: no such file`);
			return { name: spec.slice(0, at), server };
		}),
		{ name: "main" },
		{ name: "main, notifier off", extraEnv: { SERVICES: withoutNotifier } },
	];
	const seconds = Number(values.seconds);
	const connections = Number(values.connections);
	const sz: Sizes = { seconds, warmSeconds: 2, buyers: 120_000, openSeconds: 0, standIn: 300_000, saleUsers: 0, saleStock: 0, rounds: 1 };
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dopamine-compare-"));
	const bares: Figure[] = [];
	const rounds: Round[] = [];
	const meta: Record<string, unknown> = {
		date: new Date().toISOString(),
		machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "?"}, load average before the run ${os.loadavg()[0].toFixed(1)}`,
		rounds: Number(values.rounds),
		seconds,
		connections,
	};
	try {
		for (let i = 1; i <= Number(values.rounds); i++) {
			const b = await bare(sz, dir, connections);
			bares.push(b);
			say(`round ${i}: bare ${Math.round(b.rps)} req/s, ${b.cpuMsPer1000?.toFixed(1)} ms/1000`);
			for (const build of builds) {
				const r = await measure(build, sz, dir, connections);
				rounds.push(r);
				say(
					`round ${i}: ${build.name}: sold-out ${Math.round(r.soldOut.rps)} req/s ${r.soldOut.cpuMsPer1000?.toFixed(1)} ms/1000 p99 ${r.soldOut.p99.toFixed(1)}; ` +
						`grants ${Math.round(r.grants.rps)}/s ${r.grants.cpuMsPer1000?.toFixed(1)} ms/1000 p99 ${r.grants.p99.toFixed(1)}`
				);
			}
		}
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
	meta.notes = fs.existsSync(notesFile) ? fs.readFileSync(notesFile, "utf8") : "";
	fs.writeFileSync(path.join(outDir, "compare.json"), JSON.stringify({ meta, builds, bares, rounds }, null, 2));
	fs.writeFileSync(path.join(outDir, "COMPARE.md"), markdown(builds, bares, rounds, meta));
	say(`wrote ${path.join(outDir, "COMPARE.md")}`);
}

if (require.main === module)
	main().catch(err => {
		console.error(`compare: ${err?.stack ?? err}`);
		process.exitCode = 2;
	});
