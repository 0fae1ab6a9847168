import { checkGrants, EpochFact, GrantRow } from "../../lib/order-check";

const g = (slotId: string, userId: string, epoch: number | null, seq: number | null, status = "HELD"): GrantRow => ({ slotId, userId, status, epoch, seq });
const soldOut = (epoch: number, minSeq: number, maxSeq = minSeq + 10): EpochFact => ({ epoch, outcome: "SOLD_OUT", n: maxSeq - minSeq + 1, minSeq, maxSeq });
const granted = (epoch: number, n: number): EpochFact => ({ epoch, outcome: "GRANTED", n, minSeq: 1, maxSeq: n });

describe("order check over slot rows", () => {
	it("is fair when each epoch's grants come before its first SOLD_OUT, one per buyer", () => {
		const r = checkGrants([g("1", "a", 1, 1), g("2", "b", 1, 2, "PAID"), g("3", "c", 1, 4)], [granted(1, 3), soldOut(1, 5)]);
		expect(r).toMatchObject({ ok: true, verdict: "fair", problems: [], notes: [] });
	});

	it("is not fair when a grant's seq comes after a SOLD_OUT of the same epoch", () => {
		const r = checkGrants([g("1", "a", 1, 1), g("2", "b", 1, 9)], [soldOut(1, 5)]);
		expect(r.verdict).toBe("not fair");
		expect(r.problems).toEqual(["epoch 1: SOLD_OUT at seq 5 before GRANTED at seq 9"]);
	});

	it("allows a later epoch (a reclaim or takeover) to grant after an earlier epoch sold out", () => {
		const r = checkGrants([g("1", "a", 1, 1), g("2", "b", 2, 3)], [soldOut(1, 2), soldOut(2, 4)]);
		expect(r.ok).toBe(true);
	});

	it("names a place in line granted twice, a buyer granted twice in one epoch, two active slots, a grant with no place", () => {
		const r = checkGrants(
			[g("1", "a", 1, 1), g("2", "b", 1, 1), g("3", "c", 1, 2, "EXPIRED"), g("4", "c", 1, 3), g("5", "d", 2, 1, "PAID"), g("6", "d", 3, 1, "HELD"), g("7", "e", null, null)],
			[]
		);
		expect(r.verdict).toBe("not fair");
		expect(r.problems).toEqual(
			expect.arrayContaining([
				"epoch 1: seq 1 granted twice",
				"epoch 1: buyer c was granted twice (slots 3 and 4)",
				"buyer d holds 2 active slots (5, 6)",
				"slot 7 was granted to buyer e without a place in line (no epoch/seq)",
			])
		);
		expect(r.problems).toHaveLength(4);
	});

	it("notes, without deciding, a grant count that differs from the allocator's record", () => {
		const r = checkGrants([g("1", "a", 1, 1)], [granted(1, 2)]);
		expect(r).toMatchObject({ ok: true, notes: ["epoch 1: 1 grant(s) in the slot rows, 2 recorded by the allocator"] });
	});
});
