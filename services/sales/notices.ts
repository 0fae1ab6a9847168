import type { DataSource } from "typeorm";
import type { Sql } from "../../lib/sql";
import { Locale, operatorMessages, Rendered } from "../../lib/messages";
import { buildReport, SaleReport } from "./report";
import { claimNotice, noticeSent, type NoticeKind } from "../../store/sale-notices";

/**
 * The operators' messages about a sale: "opened", "sold out" (with how long it took) and the
 * summary once the sale has closed (sold out, and every grant paid or expired), sent to the
 * operators' channels (Slack and/or Discord) through the notifier. Each goes out once however
 * many `sales` nodes watch: the node whose insert into sale_notices wins sends it (and its
 * dedupeKey makes the notifier deliver it once even if it is published twice).
 */

/** A sale's state as the watcher sees it each second. */
export interface SaleTick {
	id: string;
	name: string;
	stock: number;
	saleAt: Date;
	available: number;
	held: number;
	paid: number;
	/** Grants reclaimed unpaid: a sale whose every grant expired has all its units available again. */
	expired: number;
}

/** Opening announcements are for sales that opened recently, not for old ones found at start. */
const OPENED_RECENTLY_MS = 10 * 60_000;

/** The notices due for a sale now, in the order they happen. */
export async function dueNotices(db: Sql, s: SaleTick, now: number, done: Set<string> = new Set()): Promise<NoticeKind[]> {
	const due: NoticeKind[] = [];
	const open = now >= s.saleAt.getTime();
	if (!open) return due;
	if (now - s.saleAt.getTime() < OPENED_RECENTLY_MS) due.push("opened");
	const soldOut = s.available === 0 && s.held + s.paid > 0;
	if (soldOut) due.push("sold_out");
	// Closed: it sold out, and every grant since was paid or expired (a sale nobody bought from never
	// closes). This node may not have seen it sold out (it started later, or every grant expired
	// before its next look): then the table says whether the sold-out notice went out.
	const closed =
		s.held === 0 &&
		!done.has(`${s.id}|summary`) &&
		(soldOut || done.has(`${s.id}|sold_out`) || ((s.available < s.stock || s.expired > 0) && (await noticeSent(db, s.id, "sold_out"))));
	if (closed) due.push("summary");
	return due;
}

/** The message of one notice, in the store's LOCALE (texts in lib/messages). */
export function noticeText(kind: NoticeKind, s: SaleTick, report: SaleReport | null, locale: Locale): Rendered {
	switch (kind) {
		case "opened":
			return operatorMessages.saleOpened(locale, { id: s.id, name: s.name, stock: s.stock, saleAt: s.saleAt });
		case "sold_out":
			return operatorMessages.saleSoldOut(locale, { id: s.id, name: s.name, stock: s.stock, durationMs: report?.sale.durationMs ?? null, lastUnitAt: report?.sale.lastUnitAt ?? null });
		case "summary": {
			const r = report!;
			return operatorMessages.saleSummary(locale, {
				id: s.id,
				name: s.name,
				claims: r.claims.byOutcome,
				granted: r.units.granted,
				paid: r.units.paid,
				expired: r.units.reclaimed,
				resold: r.units.resold,
				durationMs: r.sale.durationMs,
				fair: r.orderCheck.ok,
				problems: r.orderCheck.problems,
			});
		}
	}
}

/** An operators' message as the notifier's mixin takes it (`notifyOperators`). */
export type OperatorsMessage = Rendered;

/** Sends what is due for one sale to the operators' channels; returns the kinds sent. */
export async function sendDueNotices(
	db: DataSource,
	s: SaleTick,
	notifyOperators: (message: OperatorsMessage, opts: { dedupeKey: string }) => Promise<unknown>,
	locale: Locale,
	/** "productId|kind" already sent (by any node): skipped without asking the database again. */
	done: Set<string>,
	now = Date.now()
): Promise<NoticeKind[]> {
	const sent: NoticeKind[] = [];
	for (const kind of await dueNotices(db, s, now, done)) {
		if (done.has(`${s.id}|${kind}`)) continue;
		const mine = await claimNotice(db, s.id, kind);
		done.add(`${s.id}|${kind}`);
		if (!mine) continue;
		const report = kind === "opened" ? null : await buildReport(db, s.id);
		await notifyOperators(noticeText(kind, s, report, locale), { dedupeKey: `sale-${s.id}-${kind}` });
		sent.push(kind);
	}
	return sent;
}
