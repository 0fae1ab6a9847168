import { api } from "../helpers/http";
import { sql } from "../helpers/db";
import { storeForFile } from "../helpers/store";

/** Issue 22, point 5: a field that reaches a recipient is exactly one address. */
const store = storeForFile("secinput");

describe("e-mail fields", () => {
	it("refuses a list of addresses, or anything but one address, at sign-up and forgot-password (422, with the reason)", async () => {
		const http = api(store.node.url);
		const notOne = [
			"a@example.com,b@example.org,c@example.net",
			"a@example.com;b@example.org",
			"a@example.com b@example.org",
			"Someone <a@example.com>",
			'"a,b"@example.com',
			'"x"@evil.example,"y"@example.com',
			"a@example.com,",
			"undisclosed-recipients:;",
			"a@[127.0.0.1]",
		];
		for (const [i, email] of notOne.entries()) {
			const r = await http.post("/api/auth/signup", { loginId: `list${i}`, password: "correct-horse-1", email });
			expect([email, r.status, r.body.type]).toEqual([email, 422, "VALIDATION_ERROR"]);
			expect(JSON.stringify(r.body.data)).toMatch(/exactly one e-mail address/);
			const f = await http.post("/api/auth/password/forgot", { email });
			expect([email, f.status]).toEqual([email, 422]);
		}
		expect(await sql(store.db, "SELECT count(*)::int AS n FROM users WHERE login_id LIKE 'list%'")).toEqual([{ n: 0 }]);
		// One address still signs up, trimmed and lower-cased as before.
		const ok = await http.post("/api/auth/signup", { loginId: "single", password: "correct-horse-1", email: "  Single.Person+tag@Example.COM " });
		expect(ok.status).toBe(201);
		expect(ok.body.user.email).toBe("single.person+tag@example.com");
	});
});
