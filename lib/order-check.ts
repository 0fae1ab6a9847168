/**
 * The sale's order check (DESIGN.md), over the answers a client received: within one epoch no
 * claim answered SOLD_OUT has a lower seq than a claim answered GRANTED, and (epoch, seq) names
 * one buyer's place in line, never two buyers'. Answers without an epoch (the gateways' local answers, BUSY) carry no place in line.
 */
export interface ObservedAnswer {
	type: string; // GRANTED, SOLD_OUT, ALREADY_HOLDING, SALE_NOT_OPEN, ...
	epoch?: number;
	seq?: number;
	/** Who sent the claim, when the client knows: a buyer's repeated claims share one place. */
	buyer?: string;
}

export interface OrderCheck {
	ok: boolean;
	epochs: number;
	problems: string[];
}

export function checkOrder(answers: ObservedAnswer[]): OrderCheck {
	const byEpoch = new Map<number, ObservedAnswer[]>();
	for (const a of answers) {
		if (a.epoch === undefined || a.seq === undefined) continue;
		let list = byEpoch.get(a.epoch);
		if (!list) byEpoch.set(a.epoch, (list = []));
		list.push(a);
	}
	const problems: string[] = [];
	for (const [epoch, list] of byEpoch) {
		const seen = new Map<number, ObservedAnswer>();
		let maxGranted = -Infinity;
		let minSoldOut = Infinity;
		for (const a of list) {
			const prev = seen.get(a.seq!);
			if (prev && !samePlace(prev, a)) problems.push(`epoch ${epoch}: seq ${a.seq} answered twice`);
			seen.set(a.seq!, a);
			if (a.type === "GRANTED") maxGranted = Math.max(maxGranted, a.seq!);
			if (a.type === "SOLD_OUT") minSoldOut = Math.min(minSoldOut, a.seq!);
		}
		if (minSoldOut < maxGranted) problems.push(`epoch ${epoch}: SOLD_OUT at seq ${minSoldOut} before GRANTED at seq ${maxGranted}`);
	}
	return { ok: problems.length === 0, epochs: byEpoch.size, problems };
}

/**
 * One buyer's place in line may be answered more than once: the claims a buyer sent while one was
 * undecided share its answer, and a holder's repeat claim is answered ALREADY_HOLDING with the
 * grant's own place. Two buyers never share one.
 */
function samePlace(a: ObservedAnswer, b: ObservedAnswer): boolean {
	if (a.buyer !== undefined && b.buyer !== undefined) return a.buyer === b.buyer;
	const holding = (x: ObservedAnswer) => x.type === "GRANTED" || x.type === "ALREADY_HOLDING";
	return a.type === b.type || (holding(a) && holding(b));
}

/** An answer as the HTTP API gives it: 201 {slot} or an error body with `type` and `data`. */
export function observe(status: number, body: any): ObservedAnswer {
	if (status === 201 && body?.slot) return { type: "GRANTED", epoch: body.slot.epoch, seq: body.slot.seq };
	return { type: body?.type ?? `HTTP_${status}`, epoch: body?.data?.epoch, seq: body?.data?.seq };
}

/**
 * The same order check from the store's side, over what PostgreSQL keeps: the slot rows (each
 * grant's buyer and its `epoch`/`seq`) and the allocator's recorded per-epoch facts (the lowest
 * seq it answered SOLD_OUT in each epoch). Within each epoch the grants must be the lowest seqs
 * among distinct buyers: every grant has a place in line, no place is granted twice, no buyer is
 * granted twice in one epoch or holds two active slots, and no SOLD_OUT was answered at a lower
 * seq than a grant. Notes are facts worth showing that do not decide the verdict (the recorded
 * counts lag the rows by a second during a sale).
 */
export interface GrantRow {
	slotId: string;
	userId: string;
	status: string; // HELD, PAID, EXPIRED
	epoch: number | null;
	seq: number | null;
}

export interface EpochFact {
	epoch: number;
	outcome: string;
	n: number;
	minSeq: number;
	maxSeq: number;
}

export interface GrantCheck extends OrderCheck {
	verdict: "fair" | "not fair";
	notes: string[];
}

export function checkGrants(grants: GrantRow[], facts: EpochFact[]): GrantCheck {
	const problems: string[] = [];
	const notes: string[] = [];
	const answers: ObservedAnswer[] = [];
	const grantedInEpoch = new Map<string, string>();
	const activeByBuyer = new Map<string, string[]>();
	for (const g of grants) {
		if (g.epoch === null || g.seq === null) {
			problems.push(`slot ${g.slotId} was granted to buyer ${g.userId} without a place in line (no epoch/seq)`);
			continue;
		}
		// Each slot row is a grant of its own: two rows at one place are two grants, whoever holds them.
		answers.push({ type: "GRANTED", epoch: g.epoch, seq: g.seq, buyer: `slot ${g.slotId}` });
		const key = `${g.epoch}|${g.userId}`;
		const earlier = grantedInEpoch.get(key);
		if (earlier) problems.push(`epoch ${g.epoch}: buyer ${g.userId} was granted twice (slots ${earlier} and ${g.slotId})`);
		else grantedInEpoch.set(key, g.slotId);
		if (g.status === "HELD" || g.status === "PAID") {
			const list = activeByBuyer.get(g.userId) ?? [];
			list.push(g.slotId);
			activeByBuyer.set(g.userId, list);
		}
	}
	for (const [buyer, slots] of activeByBuyer)
		if (slots.length > 1) problems.push(`buyer ${buyer} holds ${slots.length} active slots (${slots.join(", ")})`);
	for (const f of facts) if (f.outcome === "SOLD_OUT") answers.push({ type: "SOLD_OUT", epoch: f.epoch, seq: f.minSeq });
	const order = checkOrder(answers);
	problems.push(...order.problems.map(p => p.replace(/answered twice/, "granted twice")));

	const grantsByEpoch = new Map<number, number>();
	for (const g of grants) if (g.epoch !== null) grantsByEpoch.set(g.epoch, (grantsByEpoch.get(g.epoch) ?? 0) + 1);
	for (const f of facts) {
		if (f.outcome !== "GRANTED") continue;
		const rows = grantsByEpoch.get(f.epoch) ?? 0;
		if (rows !== f.n) notes.push(`epoch ${f.epoch}: ${rows} grant(s) in the slot rows, ${f.n} recorded by the allocator`);
	}
	const ok = problems.length === 0;
	return { ok, verdict: ok ? "fair" : "not fair", epochs: order.epochs, problems, notes };
}
