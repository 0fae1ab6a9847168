import { Errors } from "moleculer";
import { TransportWatch } from "../../lib/transport-watch";

const timeout = () => new Errors.RequestTimeoutError({ action: "allocator.claim", nodeID: "core" });

const rejected = () => new Errors.RequestRejectedError({ action: "allocator.claim", nodeID: "core" });

describe("TransportWatch (which failures the circuit breaker does not count)", () => {
	it("counts a timeout while NATS is fine, excuses one while this node has lost it and for a grace after", () => {
		const w = new TransportWatch(3000);
		expect(w.excuses(timeout(), 10_000)).toBe(false);
		w.lost(10_000);
		expect(w.excuses(timeout(), 12_000)).toBe(true);
		w.regained(14_000);
		expect(w.excuses(timeout(), 16_999)).toBe(true);
		expect(w.excuses(timeout(), 17_000)).toBe(false);
	});

	it("excuses the calls dropped with a node whose heartbeats this node could not hear", () => {
		const w = new TransportWatch(3000);
		expect(w.excuses(rejected(), 500)).toBe(false);
		w.lost(1000);
		expect(w.excuses(rejected(), 1500)).toBe(true);
	});

	it("never excuses a crash or a missing service: an endpoint that fails is broken whatever the transport did", () => {
		const w = new TransportWatch(3000);
		w.lost(1000);
		expect(w.excuses(new Errors.MoleculerServerError("boom", 500, "CRASH"), 1500)).toBe(false);
		expect(w.excuses(new Errors.ServiceNotAvailableError({ action: "allocator.claim" }), 1500)).toBe(false);
	});

	it("keeps the first loss when the client reports it twice", () => {
		const w = new TransportWatch(1000);
		w.lost(1000);
		w.lost(5000);
		w.regained(6000);
		expect(w.excuses(timeout(), 6500)).toBe(true);
		expect(w.excuses(timeout(), 7000)).toBe(false);
	});
});
