import type { DataSource } from "typeorm";
import { queryIndexed } from "../../lib/sql";
import { freeCountSql, grantRowsSql } from "../../store/slots";
import { productRow } from "../../store/products";
import { claimSeries } from "../../store/claim-stats";
import { epochRows } from "../../store/claim-epochs";
import { checkGrants, EpochFact, GrantCheck, GrantRow } from "../../lib/order-check";

/**
 * A sale's report, rebuilt from PostgreSQL alone (so it survives any restart): the product, the
 * allocator's recorded facts (claim_stats per second, claim_epochs per epoch) and the slot rows
 * with their payments. The statements are in store/ (the file of the table each reads); the
 * assembly is plain code.
 */

export interface SaleReport {
	product: { id: string; name: string; stock: number; saleAt: string; epoch: number };
	generatedAt: string;
	sale: {
		/** When the first allocator answer said SOLD_OUT, if any did. */
		soldOutAt: string | null;
		/** When the last unit went (the last grant before sold out), and how long after saleAt. */
		lastUnitAt: string | null;
		durationMs: number | null;
		firstGrantAt: string | null;
	};
	claims: { total: number; byOutcome: Record<string, number> };
	/** Claims the allocator answered, per second and outcome. */
	series: { second: string; counts: Record<string, number> }[];
	epochs: { epoch: number; byOutcome: Record<string, number>; firstSoldOutSeq: number | null; lastGrantSeq: number | null }[];
	orderCheck: GrantCheck;
	winners: Winner[];
	units: { stock: number; available: number; held: number; paid: number; granted: number; reclaimed: number; resold: number };
}

export interface Winner {
	/** Place among all grants, in (epoch, seq) order. */
	place: number;
	epoch: number | null;
	seq: number | null;
	slotId: string;
	unit: number;
	buyer: { id: string; loginId: string | null };
	status: string;
	heldAt: string | null;
	paidAt: string | null;
	expiredAt: string | null;
	/** The slot's payment: SUCCESS if one succeeded, else its latest attempt's status, else null. */
	payment: string | null;
}

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

export async function epochFacts(db: DataSource, productId: string): Promise<(EpochFact & { firstAt: Date; lastAt: Date })[]> {
	const rows = await epochRows(db, productId);
	return rows.map(r => ({ epoch: r.epoch, outcome: r.outcome, n: r.n, minSeq: Number(r.min_seq), maxSeq: Number(r.max_seq), firstAt: r.first_at, lastAt: r.last_at }));
}

interface GrantDbRow {
	id: string;
	unit: number;
	status: string;
	user_id: string;
	login_id: string | null;
	epoch: number | null;
	seq: string | null;
	held_at: Date | null;
	paid_at: Date | null;
	expired_at: Date | null;
	payment: string | null;
}

export function grantRows(db: DataSource, productId: string): Promise<GrantDbRow[]> {
	return queryIndexed<GrantDbRow>(db, grantRowsSql, [productId]);
}

export async function availableCount(db: DataSource, productId: string): Promise<number> {
	const [r] = await queryIndexed<{ n: number }>(db, freeCountSql, [productId]);
	return r.n;
}

/** The report, or null when the product does not exist. */
export async function buildReport(db: DataSource, productId: string): Promise<SaleReport | null> {
	const p = await productRow(db, productId);
	if (!p) return null;
	const [series, facts, grants, available] = await Promise.all([
		claimSeries(db, productId),
		epochFacts(db, productId),
		grantRows(db, productId),
		availableCount(db, productId),
	]);

	const byOutcome: Record<string, number> = {};
	const perSecond = new Map<number, Record<string, number>>();
	for (const r of series) {
		byOutcome[r.outcome] = (byOutcome[r.outcome] ?? 0) + r.n;
		const t = new Date(r.second).getTime();
		const counts = perSecond.get(t) ?? {};
		counts[r.outcome] = (counts[r.outcome] ?? 0) + r.n;
		perSecond.set(t, counts);
	}

	const epochs = new Map<number, SaleReport["epochs"][number]>();
	for (const f of facts) {
		const e = epochs.get(f.epoch) ?? { epoch: f.epoch, byOutcome: {}, firstSoldOutSeq: null, lastGrantSeq: null };
		e.byOutcome[f.outcome] = f.n;
		if (f.outcome === "SOLD_OUT") e.firstSoldOutSeq = f.minSeq;
		if (f.outcome === "GRANTED") e.lastGrantSeq = f.maxSeq;
		epochs.set(f.epoch, e);
	}

	const saleAt = new Date(p.sale_at).getTime();
	const soldOut = facts.filter(f => f.outcome === "SOLD_OUT" && new Date(f.firstAt).getTime() >= saleAt).map(f => new Date(f.firstAt).getTime());
	const soldOutAt = soldOut.length ? Math.min(...soldOut) : null;
	const heldTimes = grants.filter(g => g.held_at).map(g => new Date(g.held_at!).getTime());
	const beforeSoldOut = soldOutAt === null ? heldTimes : heldTimes.filter(t => t <= soldOutAt);
	const lastUnitAt = (soldOutAt !== null || available === 0) && beforeSoldOut.length ? Math.max(...beforeSoldOut) : null;

	// A unit is re-sold when it was granted again after an earlier grant of it expired.
	const expiredUnits = new Map<number, number>();
	for (const g of grants) if (g.status === "EXPIRED" && g.held_at) expiredUnits.set(g.unit, Math.min(expiredUnits.get(g.unit) ?? Infinity, new Date(g.held_at).getTime()));
	const resold = grants.filter(g => g.held_at && (expiredUnits.get(g.unit) ?? Infinity) < new Date(g.held_at).getTime()).length;

	const rows: GrantRow[] = grants.map(g => ({ slotId: String(g.id), userId: String(g.user_id), status: g.status, epoch: g.epoch, seq: g.seq === null ? null : Number(g.seq) }));
	return {
		product: { id: String(p.id), name: p.name, stock: p.stock, saleAt: new Date(p.sale_at).toISOString(), epoch: p.epoch },
		generatedAt: new Date().toISOString(),
		sale: {
			soldOutAt: soldOutAt === null ? null : new Date(soldOutAt).toISOString(),
			lastUnitAt: lastUnitAt === null ? null : new Date(lastUnitAt).toISOString(),
			durationMs: lastUnitAt === null ? null : Math.max(0, lastUnitAt - saleAt),
			firstGrantAt: heldTimes.length ? new Date(Math.min(...heldTimes)).toISOString() : null,
		},
		claims: { total: Object.values(byOutcome).reduce((a, b) => a + b, 0), byOutcome },
		series: [...perSecond.entries()].sort((a, b) => a[0] - b[0]).map(([t, counts]) => ({ second: new Date(t).toISOString(), counts })),
		epochs: [...epochs.values()],
		orderCheck: checkGrants(rows, facts),
		winners: grants.map((g, i) => ({
			place: i + 1,
			epoch: g.epoch,
			seq: g.seq === null ? null : Number(g.seq),
			slotId: String(g.id),
			unit: g.unit,
			buyer: { id: String(g.user_id), loginId: g.login_id },
			status: g.status,
			heldAt: iso(g.held_at),
			paidAt: iso(g.paid_at),
			expiredAt: iso(g.expired_at),
			payment: g.payment,
		})),
		units: {
			stock: p.stock,
			available,
			held: grants.filter(g => g.status === "HELD").length,
			paid: grants.filter(g => g.status === "PAID").length,
			granted: grants.length,
			reclaimed: grants.filter(g => g.status === "EXPIRED").length,
			resold,
		},
	};
}
