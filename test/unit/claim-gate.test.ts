import { ClaimGate } from "../../services/api/claim-gate";

/** The gateway's local answers: pure decisions, so tested as such. */
describe("ClaimGate", () => {
	const flag = (epoch: number, version: number, soldOut: boolean, leaseMs = 2000) => ({ productId: "7", epoch, version, soldOut, leaseMs });

	it("answers SOLD_OUT only while a sold-out lease runs", () => {
		const g = new ClaimGate(5);
		expect(g.soldOut("7", 0)).toBe(false);
		g.applyFlag(flag(3, 1, true), 1000);
		expect(g.soldOut("7", 1000)).toBe(true);
		expect(g.soldOut("7", 2999)).toBe(true);
		expect(g.soldOut("7", 3000)).toBe(false);
	});

	it("never lets an older message override a newer one", () => {
		const g = new ClaimGate(5);
		g.applyFlag(flag(3, 2, false), 0);
		expect(g.applyFlag(flag(3, 1, true), 10)).toBe(false);
		expect(g.applyFlag(flag(2, 9, true), 10)).toBe(false);
		expect(g.soldOut("7", 20)).toBe(false);
		expect(g.applyFlag(flag(3, 2, true), 30)).toBe(true); // a renewal of the same version
		expect(g.applyFlag(flag(4, 1, false), 40)).toBe(true); // a takeover: newer epoch, any version
		expect(g.soldOut("7", 50)).toBe(false);
	});

	it("withdraws a sold-out flag on reclaim without forgetting its version", () => {
		const g = new ClaimGate(5);
		g.applyFlag(flag(5, 3, true, 60_000), 0);
		g.withdrawSoldOut("7");
		expect(g.soldOut("7", 1)).toBe(false);
		expect(g.applyFlag(flag(5, 2, true, 60_000), 2)).toBe(false);
		expect(g.soldOut("7", 3)).toBe(false);
	});

	it("answers SALE_NOT_OPEN until saleAt by its schedule", () => {
		const g = new ClaimGate(5);
		g.setSchedule("7", 10_000);
		expect(g.notOpenUntil("7", 9_999)).toBe(10_000);
		expect(g.notOpenUntil("7", 10_000)).toBeNull();
		expect(g.notOpenUntil("8", 0)).toBeNull();
		g.setSchedule("7", null);
		expect(g.notOpenUntil("7", 0)).toBeNull();
	});

	it("believes a schedule for one lease only, renewed or withdrawn by the actor's flag", () => {
		const g = new ClaimGate(5, 2000);
		g.setSchedule("7", 60_000, 0);
		expect(g.notOpenUntil("7", 1999)).toBe(60_000);
		expect(g.notOpenUntil("7", 2000)).toBeNull(); // lapsed: the next claim goes to the actor
		g.applyFlag({ ...flag(1, 1, false), saleAt: new Date(60_000).toISOString() }, 2500);
		expect(g.notOpenUntil("7", 4499)).toBe(60_000);
		expect(g.notOpenUntil("7", 4500)).toBeNull();
		// The actor moved the sale earlier (a products.changed this gateway missed): its flag says open.
		g.setSchedule("7", 60_000, 5000);
		g.applyFlag(flag(2, 1, false), 5100);
		expect(g.notOpenUntil("7", 5200)).toBeNull();
	});

	it("limits one buyer's claims per second and says how long to wait", () => {
		const g = new ClaimGate(3);
		expect([g.rateLimit("u", 5000), g.rateLimit("u", 5100), g.rateLimit("u", 5200)]).toEqual([0, 0, 0]);
		expect(g.rateLimit("u", 5250)).toBe(750);
		expect(g.rateLimit("v", 5300)).toBe(0);
		expect(g.rateLimit("u", 6000)).toBe(0);
	});
});
