import { RateMeter } from "../../services/sales/live";
import { formatDuration, formatTime } from "../../lib/messages";
import { noticeText } from "../../services/sales/notices";
import type { SaleReport } from "../../services/sales/report";

describe("claims per second from the cluster's counters", () => {
	it("has no rate until a sample about a second old exists, then measures from the newest such sample", () => {
		const m = new RateMeter();
		expect(m.rates(new Map([["a|GRANTED", 10]]), 0)).toEqual({});
		expect(m.rates(new Map([["a|GRANTED", 15]]), 500)).toEqual({});
		expect(m.rates(new Map([["a|GRANTED", 30], ["b|GRANTED", 4], ["a|SOLD_OUT", 50]]), 2000)).toEqual({ GRANTED: 12.7, SOLD_OUT: 33.3 });
	});

	it("keeps a node's rate through a refresh its metrics did not come back, with no dip and no spike after", () => {
		const m = new RateMeter();
		const both = new Set(["a", "b"]);
		m.rates(new Map([["a|SOLD_OUT", 0], ["b|SOLD_OUT", 0]]), 0, both);
		expect(m.rates(new Map([["a|SOLD_OUT", 100], ["b|SOLD_OUT", 100]]), 1000, both)).toEqual({ SOLD_OUT: 200 });
		// b's call timed out: its last rate stands in (counting it as missing showed 100).
		expect(m.rates(new Map([["a|SOLD_OUT", 200]]), 2000, new Set(["a"]))).toEqual({ SOLD_OUT: 200 });
		// b is back, measured from the last sample it answered (from zero, this showed 400).
		expect(m.rates(new Map([["a|SOLD_OUT", 300], ["b|SOLD_OUT", 300]]), 3000, both)).toEqual({ SOLD_OUT: 200 });
	});

	it("keeps a node's running totals through a refresh its metrics did not come back, and drops them when it leaves", () => {
		const m = new RateMeter();
		const both = new Set(["a", "b"]);
		expect(m.totals(new Map([["a|SOLD_OUT", 100], ["b|SOLD_OUT", 50], ["b|GRANTED", 5]]), both, ["a", "b"])).toEqual({ SOLD_OUT: 150, GRANTED: 5 });
		// b's call timed out: its last totals stand in (leaving it out showed SOLD_OUT 200 and no GRANTED).
		expect(m.totals(new Map([["a|SOLD_OUT", 200]]), new Set(["a"]), ["a", "b"])).toEqual({ SOLD_OUT: 250, GRANTED: 5 });
		// b left the cluster: its counters went with it.
		expect(m.totals(new Map([["a|SOLD_OUT", 300]]), new Set(["a"]), ["a"])).toEqual({ SOLD_OUT: 300 });
		// A node whose first call failed has no totals yet.
		expect(m.totals(new Map([["a|SOLD_OUT", 300]]), new Set(["a"]), ["a", "c"])).toEqual({ SOLD_OUT: 300 });
	});

	it("counts a node whose counter went back (it restarted) from zero, never negative", () => {
		const m = new RateMeter();
		m.rates(new Map([["a|SOLD_OUT", 1000]]), 0);
		expect(m.rates(new Map([["a|SOLD_OUT", 30]]), 1000)).toEqual({ SOLD_OUT: 30 });
	});
});

describe("operators' sale messages", () => {
	const sale = { id: "7", name: "Sneakers", stock: 100, saleAt: new Date("2026-11-25T10:00:00Z"), available: 0, held: 0, paid: 0, expired: 0 };
	const report = {
		sale: { durationMs: 4210, lastUnitAt: "2026-11-25T10:00:04.210Z", soldOutAt: null, firstGrantAt: null },
		claims: { total: 0, byOutcome: { GRANTED: 100, SOLD_OUT: 5400 } },
		units: { stock: 100, available: 0, held: 0, paid: 80, granted: 120, reclaimed: 20, resold: 20 },
		orderCheck: { ok: false, verdict: "not fair", epochs: 2, problems: ["epoch 1: SOLD_OUT at seq 3 before GRANTED at seq 9"], notes: [] },
	} as unknown as SaleReport;

	it("says when a sale opened, how fast it sold out, and sums it up with the verdict", () => {
		expect(noticeText("opened", sale, null, "en")).toEqual({
			kind: "ops.saleOpened",
			subject: "Sale opened: Sneakers",
			text: `The sale of Sneakers (product 7) opened at ${formatTime("en", sale.saleAt)} with 100 unit(s).`,
		});
		expect(noticeText("sold_out", sale, report, "en")).toEqual({
			kind: "ops.saleSoldOut",
			subject: "Sold out: Sneakers in 4.21 s",
			text: "Sneakers (product 7) sold out: all 100 unit(s) went in 4.21 s (last unit at 2026-11-25T10:00:04.210Z).",
		});
		const summary = noticeText("summary", sale, report, "en");
		expect(summary.subject).toBe("Sale summary: Sneakers — not fair");
		expect(summary.text).toBe(
			"Sneakers (product 7) has closed. Claims: GRANTED 100, SOLD_OUT 5400. Grants 120, paid 80, expired 20, re-sold 20. " +
				"Sold out in 4.21 s. Order check: NOT FAIR (epoch 1: SOLD_OUT at seq 3 before GRANTED at seq 9)."
		);
	});

	it("speaks the store's LOCALE (Korean by default)", () => {
		expect(noticeText("sold_out", sale, report, "ko").subject).toBe("품절: Sneakers (4.21초)");
		expect(noticeText("summary", sale, report, "ko").text).toContain("순서 검사: 공정하지 않음 (epoch 1: SOLD_OUT at seq 3 before GRANTED at seq 9).");
	});

	it("writes durations the way an operator reads them", () => {
		expect(formatDuration("en", null)).toBe("n/a");
		expect(formatDuration("en", 850)).toBe("0.85 s");
		expect(formatDuration("en", 12_345)).toBe("12.3 s");
		expect(formatDuration("en", 185_000)).toBe("3 min 5 s");
		expect(formatDuration("ko", 185_000)).toBe("3분 5초");
	});
});
