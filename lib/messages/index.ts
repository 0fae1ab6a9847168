import { MESSAGE_KINDS, MessageBody } from "../../contracts";

/**
 * Every message the store sends, in one place, in Korean and English (LOCALE). Each function
 * takes the facts and returns the kind, subject and text; the caller adds recipient, channel and
 * dedupeKey. Buyers read these: say what happened, what to do, and by when, in their words.
 * Times are shown in Korea time for `ko` and in UTC for `en`, with the zone named.
 */
export type Locale = "ko" | "en";

export interface Rendered {
	kind: string;
	subject: string;
	text: string;
}

const ZONE: Record<Locale, { tag: string; timeZone: string; label: string }> = {
	ko: { tag: "ko-KR", timeZone: "Asia/Seoul", label: "KST" },
	en: { tag: "en-GB", timeZone: "UTC", label: "UTC" },
};

/**
 * Each locale's formatters, built once at load: constructing an Intl formatter costs about
 * 100 µs (ICU loads the locale's patterns), which was a fifth of the grant path's CPU when each
 * "slot granted" e-mail built its own (bench/PROFILE.md).
 */
const FORMAT = Object.fromEntries(
	(Object.keys(ZONE) as Locale[]).map(l => [
		l,
		{
			time: new Intl.DateTimeFormat(ZONE[l].tag, { timeZone: ZONE[l].timeZone, dateStyle: "medium", timeStyle: "short" }),
			number: new Intl.NumberFormat(ZONE[l].tag),
		},
	])
) as Record<Locale, { time: Intl.DateTimeFormat; number: Intl.NumberFormat }>;

export function formatTime(locale: Locale, at: Date | string): string {
	return `${FORMAT[locale].time.format(new Date(at))} (${ZONE[locale].label})`;
}

export function formatAmount(locale: Locale, amount: number): string {
	const n = FORMAT[locale].number.format(amount);
	return locale === "ko" ? `${n}원` : `KRW ${n}`;
}

const minutesLeft = (expiresAt: Date | string, now = Date.now()) => Math.max(1, Math.round((new Date(expiresAt).getTime() - now) / 60_000));

const PAYMENT_REASONS: Record<string, Record<Locale, string>> = {
	PAYMENT_DECLINED: { ko: "결제가 거절되었습니다", en: "the payment was declined" },
	SLOT_EXPIRED: { ko: "결제 시간이 지나 구매 자격이 만료되었습니다", en: "your slot had already expired" },
};

/** Buyers' messages (e-mail). */
export const buyerMessages = {
	signedUp(locale: Locale, p: { loginId: string; storeUrl: string }): Rendered {
		return {
			kind: MESSAGE_KINDS.signedUp,
			...(locale === "ko"
				? {
						subject: "도파민 스토어 가입을 환영합니다",
						text: `${p.loginId}님, 가입이 완료되었습니다.\n매일 오전 10시에 한정 수량 판매가 열립니다. 선착순이니 시간에 맞춰 들러 주세요.\n${p.storeUrl}/`,
					}
				: {
						subject: "Welcome to Dopamine Store",
						text: `Hello ${p.loginId}, your account is ready.\nSales open every day at 10:00 (KST), first come, first served.\n${p.storeUrl}/`,
					}),
		};
	},

	passwordReset(locale: Locale, p: { loginId: string; link: string; validMinutes: number }): Rendered {
		return {
			kind: MESSAGE_KINDS.passwordReset,
			...(locale === "ko"
				? {
						subject: "도파민 스토어 비밀번호 재설정",
						text:
							`${p.loginId}님, 비밀번호 재설정 요청을 받았습니다.\n` +
							`${p.validMinutes}분 안에 아래 링크를 열어 새 비밀번호를 정해 주세요.\n${p.link}\n` +
							`요청하지 않으셨다면 이 메일은 무시하셔도 됩니다. 비밀번호는 바뀌지 않습니다.`,
					}
				: {
						subject: "Reset your Dopamine Store password",
						text:
							`Hello ${p.loginId}, someone asked to reset your password.\n` +
							`Open this link within ${p.validMinutes} minutes to choose a new one:\n${p.link}\n` +
							`If it was not you, ignore this message: your password stays as it is.`,
					}),
		};
	},

	saleOpening(locale: Locale, p: { loginId: string; productName: string; saleAt: Date | string; productUrl: string }): Rendered {
		const at = formatTime(locale, p.saleAt);
		return {
			kind: MESSAGE_KINDS.saleOpening,
			...(locale === "ko"
				? {
						subject: `[${p.productName}] 곧 판매가 시작됩니다`,
						text: `${p.loginId}님, 알림 신청하신 ${p.productName} 판매가 ${at}에 시작됩니다.\n선착순이니 시간에 맞춰 들러 주세요: ${p.productUrl}`,
					}
				: {
						subject: `${p.productName} goes on sale soon`,
						text: `Hello ${p.loginId}, ${p.productName}, which you asked to hear about, goes on sale at ${at}.\nFirst come, first served: ${p.productUrl}`,
					}),
		};
	},

	slotGranted(locale: Locale, p: { loginId: string; productName: string; expiresAt: Date | string; payUrl: string }): Rendered {
		const until = formatTime(locale, p.expiresAt);
		const minutes = minutesLeft(p.expiresAt);
		return {
			kind: MESSAGE_KINDS.slotGranted,
			...(locale === "ko"
				? {
						subject: `[${p.productName}] 구매 자격을 얻으셨습니다`,
						text:
							`${p.loginId}님, 축하합니다! ${p.productName} 구매 자격을 얻으셨습니다.\n` +
							`${until}까지(약 ${minutes}분 안에) 결제해 주세요. 시간이 지나면 다음 분께 넘어갑니다.\n` +
							`결제하기: ${p.payUrl}`,
					}
				: {
						subject: `Your slot for ${p.productName}`,
						text:
							`Hello ${p.loginId}, congratulations: you got a slot for ${p.productName}.\n` +
							`Pay by ${until} (about ${minutes} minutes from now) or it goes back on sale.\n` +
							`Pay here: ${p.payUrl}`,
					}),
		};
	},

	slotReminder(locale: Locale, p: { loginId: string; productName: string; expiresAt: Date | string; payUrl: string }): Rendered {
		const until = formatTime(locale, p.expiresAt);
		const minutes = minutesLeft(p.expiresAt);
		return {
			kind: MESSAGE_KINDS.slotReminder,
			...(locale === "ko"
				? {
						subject: `[${p.productName}] 결제 시간이 ${minutes}분 남았습니다`,
						text:
							`${p.loginId}님, ${p.productName} 구매 자격이 ${until}에 만료됩니다(${minutes}분 남음).\n` +
							`그 전에 결제하지 않으시면 다음 분께 넘어갑니다.\n결제하기: ${p.payUrl}`,
					}
				: {
						subject: `Your slot for ${p.productName} expires in ${minutes} minute${minutes === 1 ? "" : "s"}`,
						text:
							`Hello ${p.loginId}, your slot for ${p.productName} expires at ${until} (${minutes} minute${minutes === 1 ? "" : "s"} left).\n` +
							`Pay before then or it goes back on sale.\nPay here: ${p.payUrl}`,
					}),
		};
	},

	slotExpired(locale: Locale, p: { loginId: string; productName: string; productUrl: string }): Rendered {
		return {
			kind: MESSAGE_KINDS.slotExpired,
			...(locale === "ko"
				? {
						subject: `[${p.productName}] 구매 자격이 만료되었습니다`,
						text:
							`${p.loginId}님, 결제 시간이 지나 ${p.productName} 구매 자격이 만료되었습니다. 결제된 금액은 없습니다.\n` +
							`재고가 남아 있으면 다시 신청하실 수 있습니다: ${p.productUrl}`,
					}
				: {
						subject: `Your slot for ${p.productName} has expired`,
						text:
							`Hello ${p.loginId}, the time to pay for ${p.productName} ran out and your slot went back on sale. You were not charged.\n` +
							`If any are left you can claim again: ${p.productUrl}`,
					}),
		};
	},

	/** `method` is the method's name in the buyer's words, from the payments registry (services/payments/index.ts). */
	paymentReceipt(locale: Locale, p: { loginId: string; productName: string; amount: number; method: string; paymentId: string; paidAt: Date | string }): Rendered {
		const amount = formatAmount(locale, p.amount);
		const method = p.method;
		return {
			kind: MESSAGE_KINDS.paymentReceipt,
			...(locale === "ko"
				? {
						subject: `[${p.productName}] 결제 영수증`,
						text:
							`${p.loginId}님, 결제가 완료되었습니다. 감사합니다.\n` +
							`상품: ${p.productName}\n금액: ${amount}\n결제 수단: ${method}\n결제 번호: ${p.paymentId}\n결제 시각: ${formatTime(locale, p.paidAt)}`,
					}
				: {
						subject: `Receipt: ${p.productName}`,
						text:
							`Hello ${p.loginId}, thank you: your payment is complete.\n` +
							`Product: ${p.productName}\nAmount: ${amount}\nPaid by: ${method}\nPayment: ${p.paymentId}\nPaid at: ${formatTime(locale, p.paidAt)}`,
					}),
		};
	},

	paymentFailed(
		locale: Locale,
		p: { loginId: string; productName: string; paymentId: string; reason: string; payUrl: string; canRetry: boolean; charge?: "none" | "voided" | "refund_pending" }
	): Rendered {
		const reason = PAYMENT_REASONS[p.reason]?.[locale] ?? p.reason;
		// What became of the money, truthfully: a charge made for a slot that could no longer be paid was cancelled (or is to be refunded).
		const money =
			p.charge === "voided"
				? { ko: "승인된 결제는 취소되었으며 금액은 청구되지 않습니다.", en: "The charge was approved and has been cancelled: you will not pay for it." }
				: p.charge === "refund_pending"
					? { ko: "결제 금액이 청구되었으며, 환불해 드리겠습니다.", en: "You were charged; we will refund it." }
					: { ko: "결제된 금액은 없습니다.", en: "You were not charged." };
		return {
			kind: MESSAGE_KINDS.paymentFailed,
			...(locale === "ko"
				? {
						subject: `[${p.productName}] 결제에 실패했습니다`,
						text:
							`${p.loginId}님, ${p.productName} 결제(번호 ${p.paymentId})에 실패했습니다: ${reason}.\n` +
							(p.canRetry ? `구매 자격이 남아 있는 동안 다른 수단으로 다시 결제하실 수 있습니다: ${p.payUrl}` : money.ko),
					}
				: {
						subject: `Your payment for ${p.productName} failed`,
						text:
							`Hello ${p.loginId}, your payment ${p.paymentId} for ${p.productName} failed: ${reason}.\n` +
							(p.canRetry ? `You can try again, with another method if you like, while your slot is held: ${p.payUrl}` : money.en),
					}),
		};
	},
};

/** A buyer's held slot, as the grant's outbox and the reminder read it. */
export interface HeldSlot {
	email: string;
	loginId: string;
	productName: string;
	expiresAt: Date | string;
	/** The product's page, where the slot is paid. */
	payUrl: string;
}

/**
 * The buyer's e-mail about a held slot: granted (the allocator's outbox) or about to expire (the
 * slots service's reminder). Built here once, so the two carry the same facts the same way.
 */
export function heldSlotEmail(which: "slotGranted" | "slotReminder", locale: Locale, slot: HeldSlot, dedupeKey: string): MessageBody {
	const { email, ...facts } = slot;
	return { ...buyerMessages[which](locale, facts), channel: "email", recipient: email, dedupeKey };
}

const ZWSP = "\u200b";

/**
 * A user-supplied part of an operators' message (a product's name, a buyer's address, an SMTP
 * error that echoes one), made inert for Slack and Discord: no mention (`<!channel>`, `<@U1>`,
 * `@everyone`), no link (`<https://x|y>`, `[y](https://x)`, a bare `evil.example` that the apps
 * would link). Angle brackets become look-alikes, and a zero-width space breaks `@`, `://` and
 * every dot between two letters or digits, so neither app finds a mention or a link in it. The
 * text still reads the same to the operator.
 */
export function chatSafe(part: string): string {
	return part
		.replace(/</g, "‹")
		.replace(/>/g, "›")
		.replace(/@/g, `@${ZWSP}`)
		.replace(/:\/\//g, `:${ZWSP}//`)
		.replace(/([\p{L}\p{N}])\.(?=[\p{L}\p{N}])/gu, `$1${ZWSP}.`)
		.replace(/[[\]]/g, m => (m === "[" ? "［" : "］"));
}

/** Operators' messages (Slack and/or Discord): every user-supplied part goes through chatSafe. */
export const operatorMessages = {
	unitsReclaimed(locale: Locale, p: { count: number; products: { id: string; name?: string; count: number }[] }): Rendered {
		const list = p.products.map(x => `${x.name === undefined ? `#${x.id}` : chatSafe(x.name)} (#${x.id}): ${x.count}`).join("\n");
		return {
			kind: MESSAGE_KINDS.unitsReclaimed,
			...(locale === "ko"
				? { subject: `미결제 ${p.count}건 회수, 다시 판매합니다`, text: `결제 시간이 지난 구매 자격 ${p.count}건을 회수해 재고로 돌렸습니다.\n${list}` }
				: { subject: `${p.count} unpaid unit(s) reclaimed and back on sale`, text: `${p.count} slot(s) expired unpaid; their units are on sale again.\n${list}` }),
		};
	},

	deliveriesFailed(locale: Locale, p: { failures: { id: string; kind: string; channel: string; recipient: string; attempts: number; lastError: string | null }[] }): Rendered {
		const list = p.failures
			.slice(0, 20)
			.map(f => `#${f.id} ${f.kind} → ${f.channel}:${chatSafe(f.recipient)} (${f.attempts}): ${chatSafe(f.lastError ?? "?")}`)
			.join("\n");
		const more = p.failures.length > 20 ? `\n… +${p.failures.length - 20}` : "";
		return {
			kind: MESSAGE_KINDS.deliveriesFailed,
			...(locale === "ko"
				? { subject: `알림 ${p.failures.length}건을 끝내 보내지 못했습니다`, text: `재시도를 모두 마쳤지만 보내지 못한 알림입니다. 관리자 화면에서 다시 보낼 수 있습니다.\n${list}${more}` }
				: { subject: `${p.failures.length} notification(s) finally failed`, text: `These could not be delivered after every retry; resend them from the admin API once fixed.\n${list}${more}` }),
		};
	},

	saleOpened(locale: Locale, p: { id: string; name: string; stock: number; saleAt: Date | string }): Rendered {
		const name = chatSafe(p.name);
		return {
			kind: MESSAGE_KINDS.saleOpened,
			...(locale === "ko"
				? { subject: `판매 시작: ${name}`, text: `${name} (상품 ${p.id}) 판매가 ${formatTime(locale, p.saleAt)}에 ${p.stock}개로 시작되었습니다.` }
				: { subject: `Sale opened: ${name}`, text: `The sale of ${name} (product ${p.id}) opened at ${formatTime(locale, p.saleAt)} with ${p.stock} unit(s).` }),
		};
	},

	saleSoldOut(locale: Locale, p: { id: string; name: string; stock: number; durationMs: number | null; lastUnitAt: string | null }): Rendered {
		const took = formatDuration(locale, p.durationMs);
		const name = chatSafe(p.name);
		return {
			kind: MESSAGE_KINDS.saleSoldOut,
			...(locale === "ko"
				? {
						subject: `품절: ${name} (${took})`,
						text: `${name} (상품 ${p.id}) ${p.stock}개가 ${took} 만에 모두 나갔습니다` + (p.lastUnitAt ? ` (마지막 ${formatTime(locale, p.lastUnitAt)}).` : "."),
					}
				: {
						subject: `Sold out: ${name} in ${took}`,
						text: `${name} (product ${p.id}) sold out: all ${p.stock} unit(s) went in ${took}` + (p.lastUnitAt ? ` (last unit at ${p.lastUnitAt}).` : "."),
					}),
		};
	},

	saleSummary(
		locale: Locale,
		p: { id: string; name: string; claims: Record<string, number>; granted: number; paid: number; expired: number; resold: number; durationMs: number | null; fair: boolean; problems: string[] }
	): Rendered {
		const claims = Object.entries(p.claims).map(([k, n]) => `${k} ${n}`).join(", ");
		const took = formatDuration(locale, p.durationMs);
		const why = p.problems.slice(0, 3).join("; ");
		const name = chatSafe(p.name);
		return {
			kind: MESSAGE_KINDS.saleSummary,
			...(locale === "ko"
				? {
						subject: `판매 요약: ${name} — ${p.fair ? "공정" : "공정하지 않음"}`,
						text:
							`${name} (상품 ${p.id}) 판매가 끝났습니다. 구매 요청: ${claims || "기록 없음"}. ` +
							`배정 ${p.granted}, 결제 ${p.paid}, 만료 ${p.expired}, 재판매 ${p.resold}. 품절까지 ${took}. ` +
							`순서 검사: ${p.fair ? "공정" : `공정하지 않음 (${why})`}.`,
					}
				: {
						subject: `Sale summary: ${name} — ${p.fair ? "fair" : "not fair"}`,
						text:
							`${name} (product ${p.id}) has closed. Claims: ${claims || "none recorded"}. ` +
							`Grants ${p.granted}, paid ${p.paid}, expired ${p.expired}, re-sold ${p.resold}. Sold out in ${took}. ` +
							`Order check: ${p.fair ? "fair" : `NOT FAIR (${why})`}.`,
					}),
		};
	},
};

/** How long, the way an operator reads it: "4.21 s", "12.3 s", "3 min 5 s" (Korean: 초, 분). */
export function formatDuration(locale: Locale, ms: number | null): string {
	const [s1, m1, none] = locale === "ko" ? ["초", "분", "알 수 없음"] : [" s", " min", "n/a"];
	if (ms === null) return none;
	if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}${s1}`;
	const s = Math.round(ms / 1000);
	return `${Math.floor(s / 60)}${m1} ${s % 60}${s1}`;
}
