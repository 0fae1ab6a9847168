import { ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { parseArgs } from "node:util";
import { formatReport, runSale } from "./loadtest";
import { freePort, waitUntil } from "./lib/store";

const HELP = `npm run demo: the shop, a sale opening a minute later, and a crowd at its door.

  npm run demo [-- --users 3000] [--stock 100] [--open-in 60] [--connections 100] [--exit]

Starts the store exactly as npm start does (node dist/server.js, on PORT or 3000, with
DATABASE_URL or the local "dopamine" database), creates a product that opens --open-in seconds
later, prints where to watch, and at the opening sends --users simulated buyers at it, one claim
each (the load tool's code: buyers seeded in bulk, tokens minted with the store's JWT_SECRET, which
the demo sets when you have not). Then it prints the result and keeps the store running for you to
look around (Ctrl-C stops it), or stops at once with --exit. The simulated buyers are real rows in
that database (login ids lt<run>_N, e-mail @load.invalid).`;

const SERVER = path.join(__dirname, "..", "server.js");

async function main() {
	const { values } = parseArgs({
		options: {
			users: { type: "string", default: "3000" },
			stock: { type: "string", default: "100" },
			"open-in": { type: "string", default: "60" },
			connections: { type: "string", default: "100" },
			exit: { type: "boolean", default: false },
			help: { type: "boolean", short: "h", default: false },
		},
	});
	if (values.help) return void console.log(HELP);
	const num = (name: string, v: string | undefined, min: number) => {
		const n = Number(v);
		if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}`);
		return n;
	};
	const users = num("users", values.users, 1);
	const stock = num("stock", values.stock, 1);
	const openIn = num("open-in", values["open-in"], 0);
	const connections = num("connections", values.connections, 1);

	const port = process.env.PORT === "0" ? await freePort() : Number(process.env.PORT || 3000);
	const databaseUrl = process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/dopamine";
	// The crowd's tokens are signed with the store's secret, so the demo must know it.
	const jwtSecret = process.env.JWT_SECRET || randomBytes(32).toString("hex");
	const base = `http://127.0.0.1:${port}`;

	const store: ChildProcess = spawn(process.execPath, [SERVER], {
		env: { ...process.env, PORT: String(port), DATABASE_URL: databaseUrl, JWT_SECRET: jwtSecret },
		stdio: ["ignore", "inherit", "inherit"],
	});
	const stop = () =>
		new Promise<void>(resolve => {
			if (store.exitCode !== null || store.signalCode !== null) return resolve();
			store.once("exit", () => resolve());
			store.kill("SIGTERM");
			setTimeout(() => store.kill("SIGKILL"), 5000).unref();
		});
	const exited = new Promise<never>((_, reject) => store.once("exit", code => reject(new Error(`the store exited (code ${code}); is port ${port} free?`))));
	process.once("SIGINT", () => void stop().then(() => process.exit(130)));
	process.once("SIGTERM", () => void stop().then(() => process.exit(143)));

	try {
		await Promise.race([waitUntil(`the store on ${base}`, async () => (await fetch(`${base}/api/health`)).status === 200, 60_000), exited]);
		const say = (lines: string[]) => process.stdout.write(`\n${lines.join("\n")}\n\n`);
		const report = await Promise.race([
			runSale({
				users,
				stock,
				products: 1,
				connections,
				targets: [base],
				databaseUrl,
				jwtSecret,
				openInSeconds: openIn,
				productName: "Dopamine Demo Sneaker",
				onProducts: ([id], saleAt) =>
					say([
						`=== The demo sale: ${stock} units, ${users} simulated buyers waiting, opening at ${saleAt.toISOString()} (in ${openIn} s).`,
						`    The product's page:  ${base}/p/${id}   (sign up there and try your luck against the crowd)`,
						`    The shop:            ${base}/`,
						`    Live dashboard:      ${base}/admin   (the admin: the password the store printed when it created it)`,
						`    This sale's report:  ${base}/admin/sales/${id}`,
						`    The mailbox:         ${base}/admin/mailbox`,
						`    Metrics:             ${base}/metrics`,
					]),
			}),
			exited,
		]);
		say(["=== The crowd is through:", formatReport(report)]);
		if (values.exit) {
			await stop();
			process.exitCode = report.ok ? 0 : 1;
			return;
		}
		say([`=== The store keeps running on ${base}/ — look around; Ctrl-C stops it.`]);
	} catch (err) {
		await stop();
		throw err;
	}
}

main().catch(err => {
	console.error(`demo: ${err?.message ?? err}`);
	process.exit(2);
});
