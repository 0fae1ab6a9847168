import type { Browser, Page } from "playwright-core";
import { launchBrowser, phonePage, screenshot } from "../helpers/browser";
import { sql } from "../helpers/db";
import { api } from "../helpers/http";
import { claim, seedBuyers, slotStatus } from "../helpers/sale";
import { checkScreen, press, shopPage, signUpOnPage, textOf, type } from "../helpers/shop";
import { storeForFile } from "../helpers/store";

/**
 * The buyers' pages in Debian's chromium at phone size (360 × 740), against a real store: the
 * purchase journey, a second buyer, and the product list. Screenshots go to artifacts/screenshots.
 * The sold-out lease is short so a late claim reaches the product's actor and gets a place in line.
 */
// A browser on a shared, loaded machine: sign-ups hash passwords, axe walks the page.
jest.setTimeout(120_000);

const store = storeForFile("pages", {
	ADMIN_LOGIN_ID: "boss",
	ADMIN_PASSWORD: "boss-password-1",
	ADMIN_EMAIL: "boss@example.com",
	PAYMENT_LATENCY_MS: "0",
	SOLD_OUT_LEASE_MS: "100",
	SLOT_SWEEP_INTERVAL_MS: "500",
});
const DB = store.db;
let node: typeof store.node;
let http: ReturnType<typeof api>;
let browser: Browser;
let admin: string;

beforeAll(async () => {
	node = store.node;
	http = api(node.url);
	const login = await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" });
	expect(login.status).toBe(200);
	admin = login.body.accessToken;
	browser = await launchBrowser();
});
afterAll(async () => {
	await browser?.close();
});

async function product(body: { name: string; price: number; stock: number; saleAt: Date }): Promise<string> {
	const r = await http.post("/api/admin/products", { ...body, saleAt: body.saleAt.toISOString(), description: "Limited colourway. One per buyer." }, admin);
	expect([r.status, r.body?.type]).toEqual([201, undefined]);
	return r.body.product.id;
}

/** Counts the claims a page sends. */
function claimCounter(page: Page): () => number {
	let n = 0;
	page.on("request", r => {
		if (r.method() === "POST" && /\/api\/products\/[^/]+\/slots$/.test(new URL(r.url()).pathname)) n++;
	});
	return () => n;
}

describe("the purchase page at phone size", () => {
	it("signs up, counts down, opens at saleAt and not before, buys once, pays by card, then a declined card and points; a second buyer sees sold out with a place in line", async () => {
		// Scheduled an hour ahead while the buyers sign up; moved to a few seconds ahead once they have.
		const id = await product({ name: "Air Dopamine 1 Retro High", price: 129000, stock: 1, saleAt: new Date(Date.now() + 3600_000) });

		const a = await shopPage(browser, "en-US");
		const b = await shopPage(browser, "ko-KR");
		const pageA = a.page;
		const pageB = b.page;
		const errors: string[] = [];
		for (const p of [pageA, pageB]) p.on("pageerror", e => errors.push(e.message));
		const claimsA = claimCounter(pageA);

		await pageA.goto(`${node.url}/p/${id}`);
		await pageA.locator("#product-name").filter({ hasText: "Air Dopamine 1 Retro High" }).waitFor();
		expect(await textOf(pageA, "#product-status")).toBe("Scheduled");
		expect(await pageA.locator("#buy").isDisabled()).toBe(true);
		expect(await textOf(pageA, "#buy")).toMatch(/^Opens at /);
		// Seconds are rounded up, so within its first second the hour still reads 01:00:00.
		expect(await textOf(pageA, "#countdown")).toMatch(/^Opens in (01:00:00|00:5\d:\d\d)$/);
		await checkScreen(pageA, "product-signed-out");

		await signUpOnPage(pageA, "alice", "alice@example.com", "alice-password-1");
		expect(await textOf(pageA, "#who-name")).toBe("Signed in as alice");
		expect(await pageA.locator("#account").isHidden()).toBe(true);

		// The second buyer's browser speaks Korean: so does the page.
		await pageB.goto(`${node.url}/p/${id}`);
		await pageB.locator("#product-name").waitFor();
		expect(await pageB.evaluate(() => (globalThis as any).document.documentElement.lang)).toBe("ko");
		expect(await textOf(pageB, "#buy")).toMatch(/열림$/);
		await signUpOnPage(pageB, "bora", "bora@example.com", "bora-password-1");

		// Far enough ahead that two reloads and a 1.5 s look at the countdown fit on a slow machine.
		const saleAt = new Date(Date.now() + 15_000);
		const moved = await http.patch(`/api/admin/products/${id}`, { saleAt: saleAt.toISOString() }, admin);
		expect([moved.status, moved.body?.product?.saleAt]).toEqual([200, saleAt.toISOString()]);
		for (const p of [pageA, pageB]) {
			await p.reload();
			await p.locator("html[data-ready=true]").waitFor();
		}
		expect(await textOf(pageA, "#who-name")).toBe("Signed in as alice");

		// The countdown runs by the server's clock.
		const c1 = await textOf(pageA, "#countdown");
		expect(c1).toMatch(/^Opens in 00:00:(0\d|1[0-5])$/);
		await pageA.waitForTimeout(1500);
		const c2 = await textOf(pageA, "#countdown");
		expect(c2).not.toBe(c1);
		expect(await pageA.locator("#buy").isDisabled()).toBe(true);
		expect(Date.now()).toBeLessThan(saleAt.getTime() - 1000);
		await checkScreen(pageA, "product-countdown");

		// When did the button open, by this machine's clock (which the store shares)?
		await pageA.evaluate(() => {
			const w = globalThis as any;
			const buy = w.document.getElementById("buy");
			new w.MutationObserver(() => {
				if (!buy.disabled && !w.__openedAt) w.__openedAt = Date.now();
			}).observe(buy, { attributes: true });
		});
		await pageA.waitForFunction(() => (globalThis as any).__openedAt, undefined, { timeout: 30_000, polling: 50 });
		const openedAt: number = await pageA.evaluate(() => (globalThis as any).__openedAt);
		const rtt = Number(await pageA.evaluate(() => (globalThis as any).document.documentElement.dataset.clockRtt));
		// Not before saleAt (within half the round trip the clock was read with), and promptly after.
		expect(openedAt).toBeGreaterThanOrEqual(saleAt.getTime() - rtt / 2 - 5);
		expect(openedAt).toBeLessThan(saleAt.getTime() + 3000);
		expect(await textOf(pageA, "#buy")).toBe("Buy now");

		// With the keyboard alone, the buy button is a few Tabs from the top of the page.
		await pageA.evaluate(() => (globalThis as any).document.activeElement?.blur());
		const stops: string[] = [];
		for (let i = 0; i < 8 && stops[stops.length - 1] !== "buy"; i++) {
			await pageA.keyboard.press("Tab");
			stops.push(await pageA.evaluate(() => (globalThis as any).document.activeElement?.id || (globalThis as any).document.activeElement?.textContent?.trim()));
		}
		expect(stops[stops.length - 1]).toBe("buy");

		// A double-click sends one claim.
		await pageA.locator("#buy").dblclick();
		await pageA.locator("#claim-message").filter({ hasText: "You got it" }).waitFor({ timeout: 15_000 });
		expect(await textOf(pageA, "#claim-message")).toBe("You got it! Your place in line: #1. Pay before the timer runs out.");
		await pageA.waitForTimeout(500);
		expect(claimsA()).toBe(1);
		expect(await textOf(pageA, "#slot-status")).toBe("Held for you");
		expect(await textOf(pageA, "#slot-seq")).toBe("#1");
		const t1 = await textOf(pageA, "#slot-timer");
		expect(t1).toMatch(/^(30:00|29:[0-5]\d)$/);
		await pageA.waitForTimeout(1500);
		const t2 = await textOf(pageA, "#slot-timer");
		expect(t2).toMatch(/^29:[0-5]\d$/);
		expect(t2 < t1).toBe(true);
		expect(await pageA.locator("#buy").isDisabled()).toBe(true);
		await checkScreen(pageA, "product-granted");

		// The second buyer, after the sold-out lease lapsed: sold out, in plain Korean, with a place in line.
		await pageB.waitForTimeout(300);
		await press(pageB, "#buy");
		await pageB.locator("#claim-message").filter({ hasText: "품절" }).waitFor({ timeout: 15_000 });
		expect(await textOf(pageB, "#claim-message")).toBe("품절되었습니다. 대기 순번은 #2였고, 앞선 분들에게 모두 돌아갔습니다.");
		await checkScreen(pageB, "product-sold-out-ko");

		// Pay by card, with the keyboard.
		await type(pageA, "#card-cardNumber", "4242 4242 4242 4242");
		await pageA.keyboard.press("Enter");
		await pageA.locator("#pay-message").filter({ hasText: "Paid. Thank you!" }).waitFor({ timeout: 15_000 });
		expect(await pageA.locator("#receipt").isVisible()).toBe(true);
		const receipt = await textOf(pageA, "#receipt-facts");
		expect(receipt).toContain("Air Dopamine 1 Retro High");
		expect(receipt).toContain("₩129,000");
		expect(receipt).toContain("Card");
		expect(await textOf(pageA, "#slot-status")).toBe("Paid");
		expect(await pageA.locator("#pay-form").isHidden()).toBe(true);
		const [{ slot_id: paidSlot }] = await sql<{ slot_id: string }>(DB, "SELECT slot_id FROM payments WHERE status = 'SUCCESS' AND method = 'card'");
		expect(await slotStatus(DB, paidSlot)).toBe("PAID");
		expect(await pageA.locator(`#history-body tr[data-slot="${paidSlot}"]`).textContent()).toContain("Paid");
		await checkScreen(pageA, "product-receipt");

		// Another product, open now: a declined card, then points.
		const second = await product({ name: "Dopamine Tee", price: 30000, stock: 5, saleAt: new Date(Date.now() - 1000) });
		await pageA.goto(`${node.url}/p/${second}`);
		await pageA.locator("#buy:not([disabled])").waitFor();
		await press(pageA, "#buy");
		await pageA.locator("#slot-status").filter({ hasText: "Held for you" }).waitFor({ timeout: 15_000 });
		await type(pageA, "#card-cardNumber", "4000000000000002");
		await pageA.keyboard.press("Enter");
		await pageA.locator("#pay-message").filter({ hasText: "declined" }).waitFor({ timeout: 15_000 });
		expect(await textOf(pageA, "#pay-message")).toBe("The payment was declined. Try another card or method.");
		expect(await textOf(pageA, "#slot-status")).toBe("Held for you");
		expect(await pageA.locator("#history-body tr[data-payment]").filter({ hasText: "Failed" }).count()).toBe(1);
		await checkScreen(pageA, "product-declined");
		// The method choice by keyboard: from Card, arrow down to Points.
		await pageA.locator("#pay-form input[value=card]").focus();
		await pageA.keyboard.press("ArrowDown");
		expect(await pageA.locator("#pay-form input[value=points]").isChecked()).toBe(true);
		expect(await pageA.locator("#card-fields").isHidden()).toBe(true);
		await press(pageA, "#pay");
		await pageA.locator("#pay-message").filter({ hasText: "Paid. Thank you!" }).waitFor({ timeout: 15_000 });
		expect(await textOf(pageA, "#receipt-facts")).toContain("Points");
		const [{ points }] = await sql<{ points: number }>(DB, "SELECT points FROM users WHERE login_id = 'alice'");
		expect(points).toBe(70000);
		expect(await pageA.locator("#history-body tr[data-slot]").count()).toBe(2);
		await checkScreen(pageA, "product-points-receipt");

		expect(errors).toEqual([]);
		await a.context.close();
		await b.context.close();
	});

	it("retries a 429 only after its Retry-After, with jitter, and tells the buyer", async () => {
		const id = await product({ name: "Busy drop", price: 1000, stock: 3, saleAt: new Date(Date.now() - 1000) });
		const { context, page } = await shopPage(browser, "en-US");
		const times: number[] = [];
		// The store's own flood limit is per second; a route answering 429 twice makes the timing exact.
		await page.route(`**/api/products/${id}/slots`, async route => {
			times.push(Date.now());
			if (times.length <= 2) return route.fulfill({ status: 429, headers: { "retry-after": "1", "content-type": "application/json" }, body: JSON.stringify({ name: "RateLimitedError", message: "Too many", code: 429, type: "RATE_LIMITED" }) });
			return route.continue();
		});
		await page.goto(`${node.url}/p/${id}`);
		await signUpOnPage(page, "rita", "rita@example.com", "rita-password-1");
		await press(page, "#buy");
		await page.locator("#claim-message").filter({ hasText: /Trying again in \d s/ }).waitFor({ timeout: 5000 });
		await page.locator("#claim-message").filter({ hasText: "You got it" }).waitFor({ timeout: 15_000 });
		expect(times).toHaveLength(3);
		expect(times[1] - times[0]).toBeGreaterThanOrEqual(1000);
		expect(times[2] - times[1]).toBeGreaterThanOrEqual(1000);
		await context.close();
	});
	it("counts the slot's time down live and shows its expiry; the buyer may claim again", async () => {
		const id = await product({ name: "Short hold", price: 1000, stock: 1, saleAt: new Date(Date.now() - 1000) });
		const { context, page } = await shopPage(browser, "en-US");
		await page.goto(`${node.url}/p/${id}`);
		await signUpOnPage(page, "timo", "timo@example.com", "timo-password-1");
		await press(page, "#buy");
		await page.locator("#slot-status").filter({ hasText: "Held for you" }).waitFor({ timeout: 15_000 });
		// The slot's last seconds, in SQL (the store's TTL is half an hour), then the page reloaded.
		await sql(DB, "UPDATE slots SET expires_at = now() + interval '5 seconds' WHERE product_id = $1 AND status = 'HELD'", [id]);
		await page.reload();
		await page.locator("#slot-timer").filter({ hasText: /^00:0[1-5]$/ }).waitFor({ timeout: 5000 });
		await page.locator("#slot-status").filter({ hasText: "Expired" }).waitFor({ timeout: 15_000 });
		expect(await textOf(page, "#slot-message")).toBe("Your slot expired and went back on sale.");
		expect(await page.locator("#pay-form").isHidden()).toBe(true);
		await checkScreen(page, "product-expired");
		// The store reclaims the unit; the buyer may try again.
		await page.locator("#buy:not([disabled])").waitFor({ timeout: 15_000 });
		await press(page, "#buy");
		await page.locator("#claim-message").filter({ hasText: "You got it" }).waitFor({ timeout: 15_000 });
		await context.close();
	});
});

describe("the product list", () => {
	it("lists the product, links to its page, and shows scheduled -> on sale -> sold out", async () => {
		const saleAt = new Date(Date.now() + 12_000);
		const id = await product({ name: "Neon Cap", price: 45000, stock: 1, saleAt });
		const { context, page } = await shopPage(browser, "en-US");
		await page.goto(`${node.url}/`);
		const card = page.locator(`li[data-product="${id}"]`);
		await card.waitFor();
		expect(await card.locator("a.name").getAttribute("href")).toBe(`/p/${id}`);
		expect(await card.locator("[data-role=status]").textContent()).toBe("Scheduled");
		expect(await card.locator("[data-role=remaining]").textContent()).toBe("1 of 1 left");
		expect(await card.locator("[data-role=countdown]").textContent()).toMatch(/^Opens in 00:00:(0\d|1[0-2])$/);
		await checkScreen(page, "list-scheduled");

		await card.locator("[data-role=status]", { hasText: "On sale" }).waitFor({ timeout: 15_000 });
		expect(Date.now()).toBeGreaterThanOrEqual(saleAt.getTime() - 100);
		await checkScreen(page, "list-on-sale");

		const [buyer] = await seedBuyers(DB, 1, "listbuyer");
		expect((await claim(node.url, id, buyer)).type).toBe("GRANTED");
		await card.locator("[data-role=status]", { hasText: "Sold out" }).waitFor({ timeout: 30_000 });
		expect(await card.locator("[data-role=remaining]").textContent()).toBe("0 of 1 left");
		await checkScreen(page, "list-sold-out");

		await press(page, `li[data-product="${id}"] a.name`);
		await page.waitForURL(`${node.url}/p/${id}`);
		await page.locator("#product-name").filter({ hasText: "Neon Cap" }).waitFor();
		await context.close();
	});

	it("speaks Korean to a Korean browser, under the pages' own CSP with nothing blocked", async () => {
		const { context, page } = await phonePage(browser, "ko-KR");
		const blocked: string[] = [];
		page.on("console", m => /Content Security Policy/i.test(m.text()) && blocked.push(m.text()));
		await page.goto(`${node.url}/`);
		await page.locator("h1").filter({ hasText: "오늘의 한정 판매" }).waitFor();
		expect(await page.evaluate(() => (globalThis as any).document.documentElement.lang)).toBe("ko");
		await page.locator("li[data-product] [data-role=status]").first().waitFor();
		expect(await page.locator("li[data-product] [data-role=status]").allTextContents()).toContain("품절");
		await page.goto(`${node.url}/p/1`);
		await page.locator("#product-name").filter({ hasText: "Air Dopamine 1 Retro High" }).waitFor();
		expect(await textOf(page, "#product-status")).toBe("품절");
		expect(blocked).toEqual([]);
		await screenshot(page, "list-ko");
		await context.close();
	});
});

describe("the pages as static files", () => {
	it("serves pages and assets from memory with ETags and hashed names, at no service call", async () => {
		// What the gateway asked of the broker: moleculer-web's own `api.rest` per request it handles,
		// and any call made from the gateway (background sweeps and schedule reads do not count).
		const requests = () =>
			((node.broker.metrics.getMetric("moleculer.request.total")?.snapshot() ?? []) as unknown as { labels: { action: string; caller: string | null }; value: number }[])
				.filter(v => v.labels.action === "api.rest" || v.labels.caller === "api")
				.reduce((s, v) => s + v.value, 0);
		const before = requests();
		const home = await fetch(`${node.url}/`);
		expect(home.status).toBe(200);
		expect(home.headers.get("cache-control")).toBe("no-cache");
		expect(home.headers.get("referrer-policy")).toBe("no-referrer");
		expect(home.headers.get("content-security-policy")).toMatch(/^default-src 'self'; script-src 'self'/);
		const etag = home.headers.get("etag")!;
		expect(etag).toMatch(/^"[\w-]{16}"$/);
		const html = await home.text();
		const asset = /src="(\/app\.js\?v=[\w-]+)"/.exec(html)![1];

		const again = await fetch(`${node.url}/`, { headers: { "if-none-match": etag } });
		expect([again.status, await again.text()]).toEqual([304, ""]);
		const js = await fetch(node.url + asset);
		expect(js.status).toBe(200);
		expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
		expect(js.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
		expect((await fetch(`${node.url}/app.js?v=stale`)).headers.get("cache-control")).toBe("no-cache");

		for (const path of ["/p/12", "/p/12/", "/reset", "/reset?token=abc"]) {
			const r = await fetch(node.url + path);
			expect([path, r.status, r.headers.get("content-type")]).toEqual([path, 200, "text/html; charset=utf-8"]);
		}
		expect(await (await fetch(`${node.url}/p/1`)).text()).toContain('id="buy"');
		expect(await (await fetch(`${node.url}/reset`)).text()).toContain('id="reset-form"');
		expect(requests()).toBe(before);
		await fetch(`${node.url}/api/time`);
		expect(requests()).toBeGreaterThan(before);

		// Not pages: the API's JSON 404, and nothing outside public/.
		for (const path of ["/nope", "/../package.json", "/%2e%2e/package.json", "/p/1/extra/deep", "/.hidden"]) {
			const r = await fetch(node.url + path);
			expect([path, r.status, r.headers.get("content-type")]).toEqual([path, 404, "application/json; charset=utf-8"]);
		}
		expect((await fetch(`${node.url}/api/time`)).headers.get("content-type")).toBe("application/json; charset=utf-8");
	});
});
