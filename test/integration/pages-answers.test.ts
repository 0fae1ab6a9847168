import type { Browser, BrowserContext, Page } from "playwright-core";
import { launchBrowser } from "../helpers/browser";
import { sql } from "../helpers/db";
import { api } from "../helpers/http";
import { freshNamespace } from "../helpers/nodes";
import { slotStatus } from "../helpers/sale";
import { checkScreen, press, shopPage, signUpOnPage, textOf } from "../helpers/shop";
import { storeForFile } from "../helpers/store";

/**
 * The purchase page's other answers, in Debian's chromium at phone size (360 × 740), against a
 * real store: "you already have one" in a second tab, "not open yet" (a disabled button, and the
 * server's SALE_NOT_OPEN when the page's clock was misled), a phone whose clock is ten minutes
 * off either way, an easy-pay payment, and a 503's Retry-After with jitter.
 */
// A browser on a shared, loaded machine: sign-ups hash passwords, axe walks the page.
jest.setTimeout(120_000);

const store = storeForFile("pagesans", {
	NAMESPACE: freshNamespace("pagesans"),
	ADMIN_LOGIN_ID: "boss",
	ADMIN_PASSWORD: "boss-password-1",
	ADMIN_EMAIL: "boss@example.com",
	PAYMENT_LATENCY_MS: "0",
});
const DB = store.db;
let url: string;
let http: ReturnType<typeof api>;
let browser: Browser;
let admin: string;
/** Contexts a test opened: closed after it, whatever it said. */
let contexts: BrowserContext[] = [];
/** Uncaught errors of the pages a test opened: none expected. */
let errors: string[] = [];

beforeAll(async () => {
	url = store.node.url;
	http = api(url);
	const login = await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" });
	expect(login.status).toBe(200);
	admin = login.body.accessToken;
	browser = await launchBrowser();
});
afterEach(async () => {
	for (const c of contexts) await c.close().catch(() => undefined);
	contexts = [];
});
afterAll(async () => {
	await browser?.close();
});

async function product(body: { name: string; price: number; stock: number; saleAt: Date }): Promise<string> {
	const r = await http.post("/api/admin/products", { ...body, saleAt: body.saleAt.toISOString(), description: "One per buyer." }, admin);
	expect([r.status, r.body?.type]).toEqual([201, undefined]);
	return r.body.product.id;
}

/** A phone-sized context (CSP bypassed for axe), closed after the test; its pages' errors are collected. */
async function phone(locale = "en-US"): Promise<{ context: BrowserContext; page: Page }> {
	const { context, page } = await shopPage(browser, locale);
	contexts.push(context);
	context.on("page", p => p.on("pageerror", e => errors.push(e.message)));
	page.on("pageerror", e => errors.push(e.message));
	return { context, page };
}

/** Opens the product's page and waits until it has read the server's clock, the product and the buyer's slots. */
async function openProduct(page: Page, id: string): Promise<void> {
	await page.goto(`${url}/p/${id}`);
	await page.locator("html[data-ready=true]").waitFor({ timeout: 15_000 });
}

const isClaim = (method: string, u: string) => method === "POST" && /\/api\/products\/[^/]+\/slots$/.test(new URL(u).pathname);

/** Counts the claims the context's pages send (every tab). */
function claimCounter(context: BrowserContext): () => number {
	let n = 0;
	context.on("request", r => {
		if (isClaim(r.method(), r.url())) n++;
	});
	return () => n;
}

/** The id of the focused element (or its text), as a keyboard user would see where they are. */
const focused = (page: Page) =>
	page.evaluate(() => {
		const d = (globalThis as any).document;
		const a = d.activeElement;
		return !a || a === d.body ? "body" : a.id || a.textContent?.trim() || a.tagName;
	});

beforeEach(() => {
	errors = [];
});

describe("the purchase page's answers at phone size", () => {
	it("tells a buyer who already holds a slot 'you already have one': in a second tab, and on a fresh page load", async () => {
		const id = await product({ name: "Twice Tee", price: 20000, stock: 3, saleAt: new Date(Date.now() - 1000) });
		const { context, page: tab1 } = await phone("en-US");
		const claims = claimCounter(context);
		await openProduct(tab1, id);
		await signUpOnPage(tab1, "holly", "holly@example.com", "holly-password-1");

		// A second tab, opened before the first one buys: signed in (the session is this browser's), the button open.
		const tab2 = await context.newPage();
		await openProduct(tab2, id);
		expect(await textOf(tab2, "#who-name")).toBe("Signed in as holly");
		expect(await tab2.locator("#buy").isEnabled()).toBe(true);

		await press(tab1, "#buy");
		await tab1.locator("#claim-message").filter({ hasText: "You got it" }).waitFor({ timeout: 15_000 });

		// The second tab still offers the button; pressing it, the store answers ALREADY_HOLDING.
		expect(await textOf(tab2, "#buy")).toBe("Buy now");
		await press(tab2, "#buy");
		await tab2.locator("#claim-message").filter({ hasText: "already" }).waitFor({ timeout: 15_000 });
		expect(await textOf(tab2, "#claim-message")).toBe("You already have one of these (see below).");
		// "See below": the slot the store named, held, with its place in line; no second button press possible.
		expect(await textOf(tab2, "#slot-status")).toBe("Held for you");
		expect(await textOf(tab2, "#slot-seq")).toBe("#1");
		expect(await tab2.locator("#buy").isDisabled()).toBe(true);
		expect(await textOf(tab2, "#buy")).toBe("You have this one");
		await checkScreen(tab2, "answers-already-holding");
		expect(claims()).toBe(2);

		// A fresh page load knows it from the buyer's slots: the button says so and sends nothing,
		// even when its handler is forced (the disabled attribute removed, then clicked and pressed).
		const tab3 = await context.newPage();
		await openProduct(tab3, id);
		expect(await tab3.locator("#buy").isDisabled()).toBe(true);
		expect(await textOf(tab3, "#buy")).toBe("You have this one");
		expect(await textOf(tab3, "#slot-status")).toBe("Held for you");
		await tab3.evaluate(() => {
			const b = (globalThis as any).document.getElementById("buy");
			b.disabled = false;
			b.click();
		});
		await press(tab3, "#buy");
		await tab3.waitForTimeout(500);
		expect(claims()).toBe(2);

		// The store holds one slot for the buyer, whatever the tabs did.
		const rows = await sql<{ status: string }>(DB, "SELECT s.status FROM slots s JOIN users u ON u.id = s.user_id WHERE u.login_id = 'holly' AND s.product_id = $1", [id]);
		expect(rows).toEqual([{ status: "HELD" }]);
		expect(errors).toEqual([]);
	});

	it("keeps the button shut before saleAt (no focus, no claim even when forced); a page misled about the time hears 'not open yet'", async () => {
		const saleAt = new Date(Date.now() + 3600_000);
		const id = await product({ name: "Later Cap", price: 15000, stock: 2, saleAt });
		const { context, page } = await phone("en-US");
		const claims = claimCounter(context);
		await openProduct(page, id);
		await signUpOnPage(page, "nora", "nora@example.com", "nora-password-1");

		// Before saleAt the button is disabled, so the keyboard cannot reach it: neither focus() nor Tab.
		expect(await page.locator("#buy").isDisabled()).toBe(true);
		expect(await textOf(page, "#buy")).toMatch(/^Opens at /);
		await page.locator("#buy").focus();
		expect(await focused(page)).not.toBe("buy");
		await page.evaluate(() => (globalThis as any).document.activeElement?.blur());
		const stops: string[] = [];
		for (let i = 0; i < 20; i++) {
			await page.keyboard.press("Tab");
			stops.push(await focused(page));
		}
		expect(stops).not.toContain("buy");
		// The walk went round the whole page at least once (past the last control, back to the first).
		expect(stops.filter(s => s === "sign-out").length).toBeGreaterThanOrEqual(2);
		expect(stops).toContain("All products");
		// Forced: the disabled attribute removed, the button clicked and pressed: the handler still refuses, by the server's clock.
		await page.evaluate(() => {
			const b = (globalThis as any).document.getElementById("buy");
			b.disabled = false;
			b.click();
		});
		await press(page, "#buy");
		await page.keyboard.press("Space");
		await page.waitForTimeout(500);
		expect(claims()).toBe(0);
		expect(await page.locator("#claim-message").isHidden()).toBe(true);

		// A page whose reading of the server's clock was wrong (a stale /api/time from some cache, an
		// hour and a few seconds ahead) opens the button; the store refuses the claim and the page says so.
		const misled = await context.newPage();
		let lie = true;
		await misled.route("**/api/time", route =>
			lie ? route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ now: new Date(Date.now() + 3600_000 + 5000).toISOString() }) }) : route.continue()
		);
		await openProduct(misled, id);
		expect(await misled.locator("#buy").isEnabled()).toBe(true);
		expect(await textOf(misled, "#buy")).toBe("Buy now");
		lie = false;
		await press(misled, "#buy");
		await misled.locator("#claim-message").filter({ hasText: "Not open yet" }).waitFor({ timeout: 15_000 });
		const opensAt = await misled.evaluate(
			iso => new Intl.DateTimeFormat("en-US", { hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(new Date(iso)),
			saleAt.toISOString()
		);
		const message = await textOf(misled, "#claim-message");
		expect(message).toMatch(/^Not open yet\. It opens at .+\.$/);
		expect(message).toContain(opensAt);
		expect(claims()).toBe(1);
		// It read the server's clock again: the button is shut, the countdown an hour long.
		await misled.locator("#buy[disabled]").waitFor({ timeout: 5000 });
		expect(await textOf(misled, "#buy")).toMatch(/^Opens at /);
		expect(await textOf(misled, "#countdown")).toMatch(/^Opens in (00:59:[0-5]\d|01:00:00)$/);
		await checkScreen(misled, "answers-not-open");
		expect(await sql(DB, "SELECT 1 FROM slots WHERE product_id = $1 AND status <> 'AVAILABLE'", [id])).toEqual([]);
		expect(errors).toEqual([]);
	});

	it("opens the button at the server's saleAt on phones whose clocks are 10 minutes ahead and 10 minutes behind", async () => {
		// Far enough ahead that two page loads, their checks and an axe run fit on a slow machine.
		const saleAt = new Date(Date.now() + 15_000);
		const id = await product({ name: "Skew Sneaker", price: 99000, stock: 5, saleAt });
		const phones: { page: Page; offset: number }[] = [];
		for (const offset of [10 * 60_000, -10 * 60_000]) {
			const { page } = await phone("en-US");
			// The phone's wall clock is off by `offset`: Date.now() and new Date() say so; performance.now() is true.
			await page.addInitScript((off: number) => {
				const w = globalThis as any;
				const RealDate = w.Date;
				const realNow = RealDate.now.bind(RealDate);
				class SkewedDate extends RealDate {
					constructor(...args: any[]) {
						if (args.length === 0) super(realNow() + off);
						else super(...(args as [any]));
					}
					static now() {
						return realNow() + off;
					}
				}
				w.Date = SkewedDate;
				w.__realNow = realNow;
			}, offset);
			phones.push({ page, offset });
		}
		await Promise.all(phones.map(p => openProduct(p.page, id)));
		for (const { page, offset } of phones) {
			// The skew is in effect in the page...
			const skew: number = await page.evaluate(() => Date.now() - (globalThis as any).__realNow());
			expect(Math.abs(skew - offset)).toBeLessThan(1000);
			// ...and the countdown ignores it: seconds to go by the server's clock, not 10 minutes either way.
			expect(await textOf(page, "#countdown")).toMatch(/^Opens in 00:00:(0\d|1[0-5])$/);
			expect(await page.locator("#buy").isDisabled()).toBe(true);
			// When the button opens, by the real clock (which the store shares).
			await page.evaluate(() => {
				const w = globalThis as any;
				const buy = w.document.getElementById("buy");
				new w.MutationObserver(() => {
					if (!buy.disabled && !w.__openedAt) w.__openedAt = w.__realNow();
				}).observe(buy, { attributes: true });
			});
		}
		expect(Date.now()).toBeLessThan(saleAt.getTime() - 1000);
		await checkScreen(phones[0].page, "answers-skewed-countdown");

		for (const { page, offset } of phones) {
			await page.waitForFunction(() => (globalThis as any).__openedAt, undefined, { timeout: 30_000, polling: 50 });
			const openedAt: number = await page.evaluate(() => (globalThis as any).__openedAt);
			const rtt = Number(await page.evaluate(() => (globalThis as any).document.documentElement.dataset.clockRtt));
			// Not before saleAt (within half the round trip the clock was read with), and within a few seconds after.
			const after = openedAt - saleAt.getTime();
			expect({ offset, after, rtt, early: after < -rtt / 2 - 5 }).toEqual({ offset, after, rtt, early: false });
			expect({ offset, after, rtt, late: after >= 3000 }).toEqual({ offset, after, rtt, late: false });
			expect(await textOf(page, "#buy")).toBe("Buy now");
			expect(await textOf(page, "#countdown")).toBe("On sale now");
		}
		expect(errors).toEqual([]);
	});

	it("pays with easy pay: claim, choose easy pay and a provider, pay, see the receipt and the slot PAID", async () => {
		const id = await product({ name: "Easy Hoodie", price: 59000, stock: 2, saleAt: new Date(Date.now() - 1000) });
		const { page } = await phone("en-US");
		await openProduct(page, id);
		await signUpOnPage(page, "ezra", "ezra@example.com", "ezra-password-1");
		await press(page, "#buy");
		await page.locator("#slot-status").filter({ hasText: "Held for you" }).waitFor({ timeout: 15_000 });

		// By keyboard: from Card, arrow down twice to Easy pay; the provider field replaces the card field.
		await page.locator("#pay-form input[value=card]").focus();
		await page.keyboard.press("ArrowDown");
		await page.keyboard.press("ArrowDown");
		expect(await page.locator("#pay-form input[value=easypay]").isChecked()).toBe(true);
		expect(await page.locator("#card-fields").isHidden()).toBe(true);
		expect(await page.locator("#easypay-fields").isVisible()).toBe(true);
		await page.locator("#easypay-provider").selectOption("toss");
		await checkScreen(page, "answers-easypay-form");
		await press(page, "#pay");
		await page.locator("#pay-message").filter({ hasText: "Paid. Thank you!" }).waitFor({ timeout: 15_000 });

		expect(await page.locator("#receipt").isVisible()).toBe(true);
		const receipt = await textOf(page, "#receipt-facts");
		expect(receipt).toContain("Easy Hoodie");
		expect(receipt).toContain("₩59,000");
		expect(receipt).toContain("Easy pay");
		expect(await textOf(page, "#slot-status")).toBe("Paid");
		expect(await page.locator("#pay-form").isHidden()).toBe(true);

		const payments = await sql<{ slot_id: string; method: string; provider: string; status: string; amount: string }>(
			DB,
			"SELECT p.slot_id, p.method, p.details->>'provider' AS provider, p.status, p.amount FROM payments p JOIN users u ON u.id = p.user_id WHERE u.login_id = 'ezra'"
		);
		expect(payments.map(({ slot_id: _, ...p }) => p)).toEqual([{ method: "easypay", provider: "toss", status: "SUCCESS", amount: "59000.00" }]);
		expect(await slotStatus(DB, payments[0].slot_id)).toBe("PAID");
		expect(await page.locator(`#history-body tr[data-slot="${payments[0].slot_id}"]`).textContent()).toContain("Paid");
		expect(await page.locator("#history-body tr[data-payment]").filter({ hasText: "Easy pay" }).count()).toBe(1);
		await checkScreen(page, "answers-easypay-receipt");
		expect(errors).toEqual([]);
	});

	it("retries a 503 only after its Retry-After, with jitter, and tells the buyer", async () => {
		const id = await product({ name: "Busy Bag", price: 1000, stock: 3, saleAt: new Date(Date.now() - 1000) });
		const { page } = await phone("en-US");
		const times: number[] = [];
		const BUSY = 3;
		// The first three claims answered 503 Retry-After: 1 (a sale moving to another node); the fourth reaches the store.
		await page.route(`**/api/products/${id}/slots`, async route => {
			if (!isClaim(route.request().method(), route.request().url())) return route.continue();
			times.push(Date.now());
			if (times.length <= BUSY)
				return route.fulfill({
					status: 503,
					headers: { "retry-after": "1", "content-type": "application/json" },
					body: JSON.stringify({ name: "StoreUnavailableError", message: "The sale is moving to another node; try again", code: 503, type: "UNAVAILABLE" }),
				});
			return route.continue();
		});
		await openProduct(page, id);
		await signUpOnPage(page, "bessy", "bessy@example.com", "bessy-password-1");
		await press(page, "#buy");
		// The wait is Retry-After plus up to half of it in jitter: 1 to 1.5 s, said in whole seconds.
		await page.locator("#claim-message").filter({ hasText: /^The store is busy\. Trying again in [12] s…$/ }).waitFor({ timeout: 5000 });
		expect(await page.locator("#buy").isDisabled()).toBe(true);
		await checkScreen(page, "answers-busy");
		await page.locator("#claim-message").filter({ hasText: "You got it" }).waitFor({ timeout: 15_000 });
		expect(times).toHaveLength(BUSY + 1);

		// public/app.js backoffMs: Retry-After × 1000 + random × max(300, half of it) = [1000, 1500) ms here.
		// Allowed: that, plus 1 s for the route's round trips on a slow machine.
		const gaps = times.slice(1).map((t, i) => t - times[i]);
		for (const gap of gaps) {
			expect({ gaps, gap, atLeastRetryAfter: gap >= 1000 }).toEqual({ gaps, gap, atLeastRetryAfter: true });
			expect({ gaps, gap, withinJitter: gap <= 1500 + 1000 }).toEqual({ gaps, gap, withinJitter: true });
		}
		// Jitter: three waits drawn at random are not all the same to the millisecond.
		expect({ gaps, distinct: new Set(gaps).size > 1 }).toEqual({ gaps, distinct: true });
		expect(await sql(DB, "SELECT s.status FROM slots s JOIN users u ON u.id = s.user_id WHERE u.login_id = 'bessy'")).toEqual([{ status: "HELD" }]);
		expect(errors).toEqual([]);
	});
});
