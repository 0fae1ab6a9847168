import { spawn } from "node:child_process";
import path from "node:path";
import { hashPassword } from "../../lib/passwords";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { api } from "../helpers/http";
import { ChildNode, spawnNode, waitFor } from "../helpers/nodes";
import { track, untrack } from "../helpers/resources";

/**
 * `npm start` with nothing configured: the store (node dist/server.js, as npm start runs it)
 * creates a local admin when none exists, prints its generated password once with the shop's
 * addresses, and never touches an existing admin's password on later starts, ADMIN_PASSWORD or not.
 */
jest.setTimeout(120_000);

const DB = freshDatabaseUrl("bootstrap");
const DEMO_DB = freshDatabaseUrl("demo");
afterAll(async () => {
	await dropDatabase(DB);
	await dropDatabase(DEMO_DB);
});

/** Starts the store on any free port and waits until it serves; returns it and its address. */
async function start(env: Record<string, string> = {}): Promise<{ child: ChildNode; url: string }> {
	const child = spawnNode({ DATABASE_URL: DB, PORT: "0", METRICS_PORT: "0", LOG_LEVEL: "info", ...env });
	let url = "";
	await waitFor(
		"the store to start",
		() => {
			if (child.proc.exitCode !== null) throw new Error(`the store exited:\n${child.output()}`);
			const m = /Dopamine Store API on (http:\/\/127\.0\.0\.1:\d+)/.exec(child.output());
			if (m) url = m[1];
			return !!m && /ServiceBroker with \d+ service\(s\) started/.test(child.output());
		},
		60_000
	);
	return { child, url };
}

const login = (url: string, loginId: string, password: string) => api(url).post("/api/auth/login", { loginId, password });

describe("the admin bootstrap", () => {
	it("creates a local admin with a generated password printed once, and leaves it alone on the next start", async () => {
		const first = await start();
		const out = first.child.output();
		const m = /Login id: (\S+)\s+Password: (\S+)/.exec(out);
		expect(m).not.toBeNull();
		const [, loginId, password] = m!;
		expect(loginId).toBe("admin");
		expect(password).toMatch(/^[\w-]{20}$/);
		expect(out.split(password)).toHaveLength(2);
		// Where to go, printed with it.
		expect(out).toContain(`Shop:    ${first.url}/`);
		expect(out).toContain(`Admin:   ${first.url}/admin`);
		expect(out).toContain(`Mailbox: ${first.url}/admin/mailbox`);

		const ok = await login(first.url, loginId, password);
		expect(ok.status).toBe(200);
		const me = await api(first.url).get("/api/me", ok.body.accessToken);
		expect(me.body.user).toMatchObject({ loginId: "admin", role: "admin" });
		// A buyer takes a login id an operator will later name in ADMIN_LOGIN_ID.
		expect((await api(first.url).post("/api/auth/signup", { loginId: "chief", password: "chief-password-1", email: "chief@example.com" })).status).toBe(201);
		await first.child.stop();

		// Restart: no second admin, no password printed, the first one still works.
		const second = await start();
		expect(second.child.output()).not.toMatch(/Password:/);
		expect(second.child.output()).not.toContain(password);
		expect((await login(second.url, loginId, password)).status).toBe(200);
		expect(await sql(DB, "SELECT login_id FROM users WHERE role = 'admin'")).toEqual([{ login_id: "admin" }]);
		await second.child.stop();

		// ADMIN_LOGIN_ID naming a buyer's account does not make that buyer an admin.
		const third = await start({ ADMIN_LOGIN_ID: "chief", ADMIN_PASSWORD: "taken-over-password-1", ADMIN_EMAIL: "ops@example.com" });
		expect(third.child.output()).toContain("ADMIN_LOGIN_ID 'chief' belongs to a buyer's account; no admin was created.");
		expect((await login(third.url, "chief", "taken-over-password-1")).status).toBe(401);
		expect(await sql(DB, "SELECT role FROM users WHERE login_id = 'chief'")).toEqual([{ role: "buyer" }]);
		await third.child.stop();
	});

	it("creates the ADMIN_LOGIN_ID admin once; a later reset is not undone by ADMIN_PASSWORD at the next start", async () => {
		const env = { ADMIN_LOGIN_ID: "boss", ADMIN_PASSWORD: "first-password-1", ADMIN_EMAIL: "boss@example.com" };
		const first = await start(env);
		expect(first.child.output()).toContain("Admin 'boss' created from ADMIN_LOGIN_ID.");
		expect(first.child.output()).not.toContain("first-password-1");
		expect((await login(first.url, "boss", "first-password-1")).status).toBe(200);
		await first.child.stop();

		// The admin changes the password (as a reset does: a new hash on the row).
		await sql(DB, "UPDATE users SET password_hash = $1 WHERE login_id = 'boss'", [await hashPassword("changed-password-2")]);
		const second = await start(env);
		expect(second.child.output()).toContain("Admin 'boss' exists; its password is left as it is");
		expect((await login(second.url, "boss", "changed-password-2")).status).toBe(200);
		expect((await login(second.url, "boss", "first-password-1")).status).toBe(401);
		await second.child.stop();
	});
});

describe("npm run demo", () => {
	it("starts the store as npm start does, opens a sale, sends the crowd at the opening and prints where to watch", async () => {
		const demo = spawn(process.execPath, [path.join(__dirname, "..", "..", "dist", "bench", "demo.js"), "--users", "200", "--stock", "10", "--open-in", "2", "--exit"], {
			env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", DATABASE_URL: DEMO_DB, PORT: "0", METRICS_PORT: "0" },
			stdio: ["ignore", "pipe", "pipe"],
		});
		const key = {};
		track(key, { name: `demo ${demo.pid}`, close: async () => void demo.kill("SIGKILL") });
		let out = "";
		demo.stdout!.on("data", d => (out += d));
		demo.stderr!.on("data", d => (out += d));
		const code = await new Promise<number | null>(resolve => demo.once("exit", c => resolve(c)));
		untrack(key);
		expect({ code, out: code === 0 ? "" : out }).toEqual({ code: 0, out: "" });
		// The store's own lines: the generated admin and the addresses.
		expect(out).toMatch(/Login id: admin\s+Password: [\w-]{20}/);
		expect(out).toMatch(/Shop: +http:\/\/127\.0\.0\.1:\d+\//);
		// The demo's: where to watch, then the crowd's result.
		const page = /The product's page: +(http:\/\/127\.0\.0\.1:\d+)\/p\/(\d+)/.exec(out);
		expect(page).not.toBeNull();
		expect(out).toContain(`/admin/sales/${page![2]}`);
		expect(out).toMatch(/granted in PostgreSQL +10 \(10 distinct buyers\)/);
		expect(out).toMatch(/ok +product \d+: order check/);
		const [{ granted }] = await sql<{ granted: number }>(DEMO_DB, "SELECT count(*)::int AS granted FROM slots WHERE status = 'HELD'");
		expect(granted).toBe(10);
	});
});
