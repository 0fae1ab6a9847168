import { api } from "../helpers/http";
import { storeForFile } from "../helpers/store";

/**
 * Issue 22, point 6: nobody can lock the admin out. The strict limit is per (login id, address);
 * the id's own ceiling across addresses is far higher. Behind TRUSTED_PROXIES (loopback here), each
 * request says its client address in X-Forwarded-For. Default limits: 5 per id and address, 100 per
 * address, 100 per id.
 */
const store = storeForFile("seclogin", { TRUSTED_PROXIES: "loopback", ADMIN_LOGIN_ID: "admin", ADMIN_PASSWORD: "the-admins-password-1", ADMIN_EMAIL: "admin@example.com" });

const login = (address: string, password: string) =>
	api(store.node.url).post("/api/auth/login", { loginId: "admin", password }, undefined, { "x-forwarded-for": address });

describe("failed logins for the admin", () => {
	it("100 wrong tries from one address do not stop the right password from another address", async () => {
		const replies = [];
		for (let i = 0; i < 100; i++) replies.push((await login("198.51.100.7", "wrong-password")).status);
		// The strict limit struck: the guesser's first five reached the check, the rest were refused.
		expect(replies.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
		expect(new Set(replies.slice(5))).toEqual(new Set([429]));
		// The guesser's own address is locked out, even with the right password...
		expect((await login("198.51.100.7", "the-admins-password-1")).status).toBe(429);
		// ...the admin, from anywhere else, is not.
		const ok = await login("192.0.2.44", "the-admins-password-1");
		expect([ok.status, ok.body.tokenType]).toEqual([200, "Bearer"]);
	});

	it("guesses from many addresses slow down with each one past the strict limit, and the right password still gets in", async () => {
		const started = Date.now();
		const statuses = [];
		for (let i = 0; i < 8; i++) statuses.push((await login(`203.0.113.${100 + i}`, "wrong-password")).status);
		expect(statuses).toEqual(Array(8).fill(401));
		// Delays of 50, 100, ... ms from the sixth failure of the minute on: at least 50+100+...+1600 ms in all.
		expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
		expect((await login("192.0.2.45", "the-admins-password-1")).status).toBe(200);
	});
});
