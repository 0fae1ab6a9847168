import { randomBytes, scryptSync } from "node:crypto";
import { api } from "../helpers/http";
import { sql } from "../helpers/db";
import { waitFor } from "../helpers/nodes";
import { storeForFile } from "../helpers/store";

/** Issue 22, point 11: scrypt at OWASP's cost (N=2^14, r=8, p=5, its 16 MiB equivalent), old hashes upgraded at login. */
const store = storeForFile("secpasswords");
const hashOf = async (loginId: string) => (await sql<{ password_hash: string }>(store.db, "SELECT password_hash FROM users WHERE login_id = $1", [loginId]))[0].password_hash;

describe("password hashes", () => {
	it("are made at today's cost", async () => {
		expect((await api(store.node.url).post("/api/auth/signup", { loginId: "fresh", password: "fresh-password-1", email: "fresh@example.com" })).status).toBe(201);
		expect(await hashOf("fresh")).toMatch(/^scrypt\$16384\$8\$5\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
	});

	it("an old hash (p=1) still logs in, and is upgraded to today's cost", async () => {
		const http = api(store.node.url);
		expect((await http.post("/api/auth/signup", { loginId: "veteran", password: "placeholder-pass-1", email: "veteran@example.com" })).status).toBe(201);
		const salt = randomBytes(16);
		const old = `scrypt$16384$8$1$${salt.toString("base64")}$${scryptSync("veteran-password-1", salt, 32, { N: 16384, r: 8, p: 1 }).toString("base64")}`;
		await sql(store.db, "UPDATE users SET password_hash = $1 WHERE login_id = 'veteran'", [old]);
		expect((await http.post("/api/auth/login", { loginId: "veteran", password: "veteran-password-1" })).status).toBe(200);
		await waitFor("the hash upgraded", async () => (await hashOf("veteran")) !== old, 10_000);
		expect(await hashOf("veteran")).toMatch(/^scrypt\$16384\$8\$5\$/);
		expect((await http.post("/api/auth/login", { loginId: "veteran", password: "veteran-password-1" })).status).toBe(200);
		expect((await http.post("/api/auth/login", { loginId: "veteran", password: "wrong-password-1" })).status).toBe(401);
	});
});
