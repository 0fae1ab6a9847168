/**
 * The sale's order check (DESIGN.md), over the answers a client received: within one epoch no
 * claim answered SOLD_OUT has a lower seq than a claim answered GRANTED, and (epoch, seq) never
 * repeats. Answers without an epoch (the gateways' local answers, BUSY) carry no place in line.
 */
export interface ObservedAnswer {
	type: string; // GRANTED, SOLD_OUT, ALREADY_HOLDING, SALE_NOT_OPEN, ...
	epoch?: number;
	seq?: number;
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
		const seen = new Set<number>();
		let maxGranted = -Infinity;
		let minSoldOut = Infinity;
		for (const a of list) {
			if (seen.has(a.seq!)) problems.push(`epoch ${epoch}: seq ${a.seq} answered twice`);
			seen.add(a.seq!);
			if (a.type === "GRANTED") maxGranted = Math.max(maxGranted, a.seq!);
			if (a.type === "SOLD_OUT") minSoldOut = Math.min(minSoldOut, a.seq!);
		}
		if (minSoldOut < maxGranted) problems.push(`epoch ${epoch}: SOLD_OUT at seq ${minSoldOut} before GRANTED at seq ${maxGranted}`);
	}
	return { ok: problems.length === 0, epochs: byEpoch.size, problems };
}

/** An answer as the HTTP API gives it: 201 {slot} or an error body with `type` and `data`. */
export function observe(status: number, body: any): ObservedAnswer {
	if (status === 201 && body?.slot) return { type: "GRANTED", epoch: body.slot.epoch, seq: body.slot.seq };
	return { type: body?.type ?? `HTTP_${status}`, epoch: body?.data?.epoch, seq: body?.data?.seq };
}
