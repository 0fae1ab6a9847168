import { TokenRevocations } from "../../lib/revocations";

describe("TokenRevocations (the gateways' memory of revoked tokens)", () => {
	it("refuses a token issued before the user's time, to the second, and no one else's", () => {
		const r = new TokenRevocations();
		r.apply({ userId: "7", notBefore: 1000 });
		expect(r.revoked({ id: "7", role: "buyer", iat: 999 })).toBe(true);
		expect(r.revoked({ id: "7", role: "buyer", iat: 1000 })).toBe(false);
		expect(r.revoked({ id: "7", role: "buyer", iat: 1001 })).toBe(false);
		expect(r.revoked({ id: "8", role: "buyer", iat: 1 })).toBe(false);
		// A token without iat cannot be placed in time: refused once anything is revoked for its user.
		expect(r.revoked({ id: "7", role: "buyer" })).toBe(true);
		expect(r.revoked({ id: "8", role: "buyer" })).toBe(false);
	});

	it("keeps the latest time whatever order broadcasts and re-reads arrive in", () => {
		const r = new TokenRevocations();
		r.apply({ userId: "7", notBefore: 2000 });
		r.apply({ userId: "7", notBefore: 1000 });
		expect(r.revoked({ id: "7", role: "admin", iat: 1500 })).toBe(true);
	});

	it("forgets a revocation once every token it could refuse has expired", () => {
		const r = new TokenRevocations();
		r.apply({ userId: "7", notBefore: 1000 });
		r.apply({ userId: "8", notBefore: 5000 });
		r.prune(1000 + 3600, 3600);
		expect(r.size).toBe(2);
		r.prune(1000 + 3601, 3600);
		expect(r.size).toBe(1);
		expect(r.revoked({ id: "8", role: "buyer", iat: 4999 })).toBe(true);
	});
});
