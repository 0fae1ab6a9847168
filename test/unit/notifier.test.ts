import { buyerMessages, chatSafe, formatAmount, formatTime, operatorMessages } from "../../lib/messages";
import { backoffMs } from "../../services/notifier/backoff";
import { retryAfterMs } from "../../services/notifier/transports/webhook";

describe("backoff", () => {
	it("doubles per try from the base, caps at the max, and jitters within the upper half", () => {
		expect(backoffMs(1, 1000, 60_000, () => 0)).toBe(500);
		expect(backoffMs(1, 1000, 60_000, () => 1)).toBe(1000);
		expect(backoffMs(3, 1000, 60_000, () => 1)).toBe(4000);
		expect(backoffMs(3, 1000, 60_000, () => 0)).toBe(2000);
		expect(backoffMs(20, 1000, 60_000, () => 1)).toBe(60_000);
		expect(backoffMs(1000, 1000, 60_000, () => 0.5)).toBe(45_000);
	});
});

describe("Retry-After", () => {
	it("reads seconds, an HTTP date, or Discord's retry_after in the body, else a second", () => {
		expect(retryAfterMs("2", "")).toBe(2000);
		expect(retryAfterMs("0.5", "")).toBe(500);
		const at = new Date(Date.now() + 10_000).toUTCString();
		expect(retryAfterMs(at, "")).toBeGreaterThan(8000);
		expect(retryAfterMs(null, '{"retry_after": 1.5}')).toBe(1500);
		expect(retryAfterMs(null, "nope")).toBe(1000);
	});
});

describe("message texts", () => {
	const expiresAt = "2026-11-25T01:30:00Z";
	it("show times in Korea time for ko and UTC for en, with the zone named, and amounts as buyers read them", () => {
		expect(formatTime("ko", expiresAt)).toMatch(/2026.*11.*25.*10:30.*\(KST\)$/);
		expect(formatTime("en", expiresAt)).toMatch(/25 Nov 2026.*01:30 \(UTC\)$/);
		expect(formatAmount("ko", 129000)).toBe("129,000원");
		expect(formatAmount("en", 129000)).toBe("KRW 129,000");
	});

	it("keep each locale's formatter apart (they are built once and reused): ko after en is still Korea time", () => {
		const en = formatTime("en", expiresAt);
		const ko = formatTime("ko", expiresAt);
		expect(formatTime("ko", "2026-11-25T02:45:00Z")).toMatch(/11:45.*\(KST\)$/);
		expect(formatTime("en", "2026-11-25T02:45:00Z")).toMatch(/02:45 \(UTC\)$/);
		expect([formatTime("en", expiresAt), formatTime("ko", expiresAt)]).toEqual([en, ko]);
	});

	it("every buyer message exists in both languages with its kind, a subject and the facts it needs", () => {
		for (const locale of ["ko", "en"] as const) {
			const all = [
				buyerMessages.signedUp(locale, { loginId: "hana", storeUrl: "https://s" }),
				buyerMessages.passwordReset(locale, { loginId: "hana", link: "https://s/reset?token=abc", validMinutes: 30 }),
				buyerMessages.slotGranted(locale, { loginId: "hana", productName: "Drop", expiresAt, payUrl: "https://s/p/7" }),
				buyerMessages.slotReminder(locale, { loginId: "hana", productName: "Drop", expiresAt, payUrl: "https://s/p/7" }),
				buyerMessages.slotExpired(locale, { loginId: "hana", productName: "Drop", productUrl: "https://s/p/7" }),
				buyerMessages.paymentReceipt(locale, { loginId: "hana", productName: "Drop", amount: 1000, method: "card", paymentId: "9", paidAt: expiresAt }),
				buyerMessages.paymentFailed(locale, { loginId: "hana", productName: "Drop", paymentId: "9", reason: "PAYMENT_DECLINED", payUrl: "https://s/p/7", canRetry: true }),
			];
			expect(all.map(m => m.kind)).toEqual(["user.signedUp", "password.reset", "slot.granted", "slot.reminder", "slot.expired", "payment.receipt", "payment.failed"]);
			for (const m of all) {
				expect(m.subject.length).toBeGreaterThan(5);
				expect(m.text).toContain("hana");
			}
			expect(all[1].text).toContain("https://s/reset?token=abc");
			expect(all[2].text).toContain("https://s/p/7");
			expect(all[2].text).toContain(formatTime(locale, expiresAt));
			expect(all[3].text).toContain("https://s/p/7");
			expect(all[5].text).toContain(formatAmount(locale, 1000));
			expect(all[6].text).toContain("https://s/p/7");
		}
		expect(buyerMessages.slotGranted("en", { loginId: "x", productName: "Drop", expiresAt, payUrl: "u" }).subject).toBe("Your slot for Drop");
		expect(buyerMessages.passwordReset("ko", { loginId: "x", link: "l", validMinutes: 30 }).subject).toBe("도파민 스토어 비밀번호 재설정");
	});

	it("operators' messages: units reclaimed per product, and failed deliveries listed with their errors", () => {
		const r = operatorMessages.unitsReclaimed("en", { count: 3, products: [{ id: "1", name: "Drop", count: 2 }, { id: "2", count: 1 }] });
		expect(r.subject).toBe("3 unpaid unit(s) reclaimed and back on sale");
		expect(r.text).toContain("Drop (#1): 2");
		const f = operatorMessages.deliveriesFailed("ko", { failures: [{ id: "5", kind: "password.reset", channel: "email", recipient: "a@b.c", attempts: 8, lastError: "SMTP ECONNREFUSED" }] });
		expect(f.subject).toBe("알림 1건을 끝내 보내지 못했습니다");
		// The recipient is the buyer's: made inert for the chat apps (no mention, no link), the same to read.
		expect(f.text).toContain(`#5 password.reset → email:${chatSafe("a@b.c")} (8): SMTP ECONNREFUSED`);
	});
});
