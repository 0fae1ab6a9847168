import { Errors } from "moleculer";
import { errorBody } from "../../services/api/replies";
import { allocatorWithFaults, installFaults } from "../helpers/faults";
import { claim, createSale, seedBuyers } from "../helpers/sale";
import { storeForFile } from "../helpers/store";

/** Issue 22, point 9: a driver's error text is logged, never sent; a 5xx says the contract's words. */
const faults = installFaults();
const store = storeForFile("secerrors", { CLAIM_RATE_PER_SECOND: "1000" }, { allocator: allocatorWithFaults(faults) });

describe("errors behind a 503", () => {
	it("a claim the database could not record answers 503 in the contract's words, without the driver's text", async () => {
		const product = await createSale(store.db, 5);
		const [buyer] = await seedBuyers(store.db, 1, "dberr");
		faults.failureText = "connect ECONNREFUSED 127.0.0.1:5432";
		faults.failCommitsUntilStopped(product);
		const r = await claim(store.node.url, product, buyer);
		// The fault struck, and it is what the buyer would have read.
		expect(faults.strikes(product)).toBeGreaterThan(0);
		expect([r.status, r.body.type]).toEqual([503, "UNAVAILABLE"]);
		expect(r.body.message).toBe("The sale is not reachable just now; try again");
		expect(JSON.stringify(r.body)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|5432/);
		expect(r.retryAfter).toBe("1");
		// Once the database is back, the same claim is granted.
		faults.disarm();
		expect((await claim(store.node.url, product, buyer)).type).toBe("GRANTED");
	});

	it("every 5xx the gateway shapes says its type's words, not the error's text", () => {
		const driver = new Errors.MoleculerRetryableError("connect ECONNREFUSED 127.0.0.1:5432", 503, "UNAVAILABLE", { retryAfter: 1 });
		expect(errorBody(driver).body).toMatchObject({ code: 503, type: "UNAVAILABLE", message: "The sale is not reachable just now; try again", data: { retryAfter: 1 } });
		const timeout = new Errors.RequestTimeoutError({ action: "products.list", nodeID: "core-7" });
		const t = errorBody(timeout as never);
		expect(t.status).toBe(504);
		expect(JSON.stringify(t.body)).not.toMatch(/core-7|products\.list/);
		const other = new Errors.MoleculerError("getaddrinfo ENOTFOUND db.internal", 503, "SOMETHING");
		expect(errorBody(other).body.message).toBe("This service is not available just now; try again");
	});
});
