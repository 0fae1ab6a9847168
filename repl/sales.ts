import { asAdmin, guarded, outcomes, ReplCommand, say, table } from "./command";

/** Watching sales: `sale <productId>`, `sales`, `owners`, `report <productId>`. */

export const saleCommand: ReplCommand = {
	command: "sale <productId>",
	description: "A sale's live state: stock, held, paid, expired, remaining, claims/s, its actor's epoch, queue and owner node",
	action: guarded(async (broker, args) => {
		const s: any = await broker.call("sales.state", { productId: String(args.productId) }, asAdmin(broker));
		const p = s.product;
		say(`Sale ${p.id} "${p.name}": ${p.status}, opens ${p.saleAt}`);
		say(`  stock ${p.stock}  held ${p.held}  paid ${p.paid}  expired ${p.expired}  remaining ${p.remaining}`);
		say(`  owner ${p.owner ?? "-"}${p.loaded ? "" : " (actor not loaded)"}  epoch ${p.epoch}  queue ${p.depth}`);
		say(`  claims/s here: ${outcomes(p.claimsPerSecond)}; cluster claims/s: ${outcomes(s.claims.perSecond)}; p99 ${s.p99ClaimMs ?? "-"} ms`);
	}),
};

export const salesCommand: ReplCommand = {
	command: "sales",
	description: "All of today's sales (opening within a day of now) with their live numbers",
	action: guarded(async broker => {
		const s: any = await broker.call("sales.live", {}, asAdmin(broker));
		say(`${s.products.length} sale(s) today; ${s.nodes.length} node(s), allocators: ${s.allocatorNodes.join(", ") || "-"}`);
		say(
			table(
				["id", "name", "status", "saleAt", "stock", "held", "paid", "expired", "remaining", "owner"],
				s.products.map((p: any) => [p.id, p.name, p.status, p.saleAt, p.stock, p.held, p.paid, p.expired, p.remaining, p.owner])
			)
		);
	}),
};

export const ownersCommand: ReplCommand = {
	command: "owners",
	description: "Which allocator node owns which of today's products (rendezvous hashing over the available allocator nodes)",
	action: guarded(async broker => {
		const o: any = await broker.call("sales.owners", {}, asAdmin(broker));
		say(`allocator nodes: ${o.allocatorNodes.join(", ") || "-"}`);
		say(table(["product", "name", "owner", "epoch", "loaded", "queue"], o.products.map((p: any) => [p.id, p.name, p.owner, p.epoch, p.loaded ? "yes" : "no", p.depth])));
	}),
};

export const reportCommand: ReplCommand = {
	command: "report <productId>",
	description: "A sale's report: order check verdict, timings, claims by outcome, grants and payments (--json for all of it)",
	options: [{ option: "--json", description: "print the whole report as JSON" }],
	action: guarded(async (broker, args) => {
		const { report: r }: any = await broker.call("sales.report", { productId: String(args.productId) }, asAdmin(broker));
		if (args.options.json) return say(JSON.stringify(r, null, 2));
		say(`Report of sale ${r.product.id} "${r.product.name}" (stock ${r.product.stock}, opened ${r.product.saleAt})`);
		say(`  order check: ${r.orderCheck.verdict}`);
		for (const p of r.orderCheck.problems) say(`    - ${p}`);
		for (const n of r.orderCheck.notes) say(`    note: ${n}`);
		say(`  last unit went ${r.sale.lastUnitAt ?? "-"}; sale took ${r.sale.durationMs === null ? "-" : `${r.sale.durationMs} ms`}`);
		say(`  claims: ${outcomes(r.claims.byOutcome)}`);
		say(`  grants ${r.units.granted}, held ${r.units.held}, paid ${r.units.paid}, reclaimed ${r.units.reclaimed}, re-sold ${r.units.resold}, remaining ${r.units.available}`);
		say(table(["place", "epoch", "seq", "buyer", "slot", "status", "payment"], r.winners.slice(0, 20).map((w: any) => [w.place, w.epoch, w.seq, w.buyer.loginId ?? w.buyer.id, w.slotId, w.status, w.payment ?? "none"])));
		if (r.winners.length > 20) say(`  ... ${r.winners.length - 20} more (report ${r.product.id} --json)`);
	}),
};
