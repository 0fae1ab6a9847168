import type { Browser, Page } from "playwright-core";
import { launchBrowser, screenshot, seriousA11yViolations } from "../helpers/browser";
import { sql } from "../helpers/db";
import { api } from "../helpers/http";
import { publishMessages } from "../../mixins/notify.mixin";
import { waitFor } from "../helpers/nodes";
import { seedBuyers, sleep } from "../helpers/sale";
import { checkScreen, press, shopPage, signUpOnPage, textOf, type } from "../helpers/shop";
import { storeForFile } from "../helpers/store";

/**
 * Products in /admin, in chromium at a desktop size: create a product through the page, see it on
 * the shop's `/`, buy it on `/p/:id`, and meet each of the service's rules as a sentence on the page.
 */
jest.setTimeout(120_000);

const ZONE = "Asia/Seoul";
const store = storeForFile("pages_admin_products", {
	ADMIN_LOGIN_ID: "boss",
	ADMIN_PASSWORD: "boss-password-1",
	ADMIN_EMAIL: "boss@example.com",
	STORE_TIME_ZONE: ZONE,
	PAYMENT_LATENCY_MS: "0",
});
let browser: Browser;

beforeAll(async () => {
	browser = await launchBrowser();
});
afterAll(async () => {
	await browser?.close();
});

/** An instant as the store's wall clock, as a datetime-local field holds it. */
const wallOf = (t: number) => new Date(t).toLocaleString("sv-SE", { timeZone: ZONE, hourCycle: "h23" }).replace(" ", "T");

async function adminPage(): Promise<Page> {
	const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: "en-US", bypassCSP: true });
	const page = await context.newPage();
	page.on("dialog", d => void d.accept());
	return page;
}

async function checkAdminScreen(page: Page, name: string): Promise<void> {
	const violations = await seriousA11yViolations(page);
	expect({ screen: name, violations }).toEqual({ screen: name, violations: [] });
	await screenshot(page, name);
}

async function fill(page: Page, f: { name?: string; price?: string; stock?: string; saleAt?: string }) {
	if (f.name !== undefined) await page.fill("#name", f.name);
	if (f.price !== undefined) await page.fill("#price", f.price);
	if (f.stock !== undefined) await page.fill("#stock", f.stock);
	if (f.saleAt !== undefined) await page.fill("#saleAt", f.saleAt);
}

async function submitAndRead(page: Page): Promise<{ error: string; ok: string }> {
	await page.evaluate(() => {
		const d = (globalThis as any).document;
		d.getElementById("form-error").textContent = "";
		d.getElementById("form-ok").textContent = "";
	});
	await page.click("#save");
	await page.waitForFunction(() => {
		const d = (globalThis as any).document;
		return d.getElementById("form-error").textContent || d.getElementById("form-ok").textContent;
	}, undefined, { timeout: 15_000 });
	return { error: await textOf(page, "#form-error"), ok: await textOf(page, "#form-ok") };
}

const rowOf = (page: Page, id: string) => page.locator(`tr[data-product="${id}"]`);

describe("products in /admin", () => {
	it("creates a product on the page, which the shop lists and sells; each rule of the service is told in words", async () => {
		const node = store.node;
		const page = await adminPage();
		const errors: string[] = [];
		page.on("pageerror", e => errors.push(e.message));
		await page.goto(`${node.url}/admin/products`);
		await type(page, "#loginId", "boss");
		await type(page, "#password", "boss-password-1");
		await page.keyboard.press("Enter");
		await page.locator("#app:not([hidden])").waitFor();
		await page.locator("#zone").filter({ hasText: ZONE }).waitFor();

		// The sale time starts at the next 10:00 in the store's zone.
		const now = wallOf(Date.now());
		const today = now.slice(0, 10);
		const tomorrow = wallOf(Date.now() + 86_400_000).slice(0, 10);
		expect(await page.inputValue("#saleAt")).toBe(`${now.slice(11, 13) < "10" ? today : tomorrow}T10:00`);
		await checkAdminScreen(page, "admin-products-new");

		// A sale time in the past is refused before anything is saved.
		await fill(page, { name: "Dopamine Cap", price: "45000", stock: "2", saleAt: wallOf(Date.now() - 60_000) });
		expect((await submitAndRead(page)).error).toBe("The sale time is in the past: choose a time to come.");
		expect(await sql(store.db, "SELECT 1 FROM products")).toEqual([]);
		// Bad numbers are told too, not sent.
		await fill(page, { stock: "-1", saleAt: wallOf(Date.now() + 3_600_000) });
		expect((await submitAndRead(page)).error).toBe("The stock must be a whole number, 0 or more.");

		// Created an hour ahead: listed as upcoming here and on the shop's front page.
		await fill(page, { stock: "2" });
		expect(await submitAndRead(page)).toEqual({ error: "", ok: "Created “Dopamine Cap”." });
		const [{ id }] = await sql<{ id: string }>(store.db, "SELECT id::text FROM products WHERE name = 'Dopamine Cap'");
		await rowOf(page, id).waitFor();
		expect(await page.locator(`[data-group=upcoming] tr[data-product="${id}"]`).count()).toBe(1);
		// Two buyers ask to be told before it opens: the admin sees them waiting.
		for (const b of await seedBuyers(store.db, 2, "waiter")) expect((await api(node.url).post(`/api/products/${id}/notify-me`, {}, b.token)).status).toBe(201);
		await page.reload();
		await rowOf(page, id).locator("[data-role=waiting]").filter({ hasText: /^2$/ }).waitFor();
		const shop = await shopPage(browser, "en-US");
		await shop.page.goto(`${node.url}/`);
		await shop.page.locator("a.name", { hasText: "Dopamine Cap" }).waitFor();

		// A buyer asks, on the product's page, to be told before it opens (알림 신청).
		const buyer = shop.page;
		await buyer.goto(`${node.url}/p/${id}`);
		await signUpOnPage(buyer, "carol", "carol@example.com", "carol-password-1");
		await buyer.locator("#notify-me:not([hidden])").waitFor();
		expect(await textOf(buyer, "#notify-me")).toBe("Notify me before it opens");
		await press(buyer, "#notify-me");
		await buyer.locator("#claim-message").filter({ hasText: "We will e-mail you at" }).waitFor();
		expect(await buyer.getAttribute("#notify-me", "aria-pressed")).toBe("true");
		expect(await textOf(buyer, "#notify-me")).toBe("Stop the reminder");
		await checkScreen(buyer, "product-notify-me");
		await page.reload();
		await rowOf(page, id).locator("[data-role=waiting]").filter({ hasText: /^3$/ }).waitFor();

		// Rescheduled through the page to a few seconds ahead (the seconds are kept).
		await rowOf(page, id).getByRole("button", { name: "Edit Dopamine Cap" }).click();
		expect(await page.inputValue("#name")).toBe("Dopamine Cap");
		const opensAt = Math.ceil((Date.now() + 6_000) / 1000) * 1000;
		await fill(page, { saleAt: wallOf(opensAt) });
		expect((await submitAndRead(page)).ok).toBe("Saved “Dopamine Cap”.");
		expect(await sql(store.db, "SELECT sale_at FROM products WHERE id = $1", [id])).toEqual([{ sale_at: new Date(opensAt) }]);

		// Bought on /p/:id once it opens.
		await buyer.reload();
		await buyer.locator("html[data-ready=true]").waitFor();
		await buyer.locator("#buy:not([disabled])").waitFor({ timeout: 30_000 });
		await press(buyer, "#buy");
		await buyer.locator("#claim-message").filter({ hasText: "You got it" }).waitFor({ timeout: 15_000 });
		await shop.context.close();

		// The rules of a product with an order, each in words.
		await page.reload();
		await rowOf(page, id).waitFor();
		expect(await page.locator(`[data-group=onSale] tr[data-product="${id}"]`).count()).toBe(1);
		await rowOf(page, id).getByRole("button", { name: "Edit Dopamine Cap" }).click();
		await fill(page, { stock: "0" });
		expect((await submitAndRead(page)).error).toBe("Stock cannot go below 1: that many units are held or paid already.");
		await checkAdminScreen(page, "admin-products-rule");
		await fill(page, { stock: "2", saleAt: wallOf(Date.now() + 7_200_000) });
		expect((await submitAndRead(page)).error).toBe("This product has orders (a unit was held, paid or expired): its sale time can no longer change and it cannot be deleted.");
		await page.click("#delete");
		await page.locator("#form-error").filter({ hasText: "has orders" }).waitFor();
		// Stock up is fine.
		await fill(page, { stock: "5", saleAt: wallOf(opensAt) });
		expect((await submitAndRead(page)).ok).toBe("Saved “Dopamine Cap”.");
		expect(await sql(store.db, "SELECT stock FROM products WHERE id = $1", [id])).toEqual([{ stock: 5 }]);

		// A product with no order is deleted from the page.
		await fill(page, { name: "Spare drop", price: "1000", stock: "3", saleAt: wallOf(Date.now() + 3_600_000) });
		expect((await submitAndRead(page)).ok).toBe("Created “Spare drop”.");
		const [{ id: spare }] = await sql<{ id: string }>(store.db, "SELECT id::text FROM products WHERE name = 'Spare drop'");
		await rowOf(page, spare).getByRole("button", { name: "Edit Spare drop" }).click();
		await page.click("#delete");
		await page.locator("#form-ok").filter({ hasText: "Deleted “Spare drop”." }).waitFor();
		expect(await sql(store.db, "SELECT 1 FROM products WHERE id = $1", [spare])).toEqual([]);
		await rowOf(page, spare).waitFor({ state: "detached" });
		await checkAdminScreen(page, "admin-products-list");

		// The mailbox page sends FAILED deliveries again in bulk, by kind.
		const noAddress = (i: number, kind: string) => ({ kind, channel: "email" as const, recipient: "", subject: `No address ${i}`, text: "-", dedupeKey: `${kind}-${i}` });
		await publishMessages(node.broker, [noAddress(1, "page.bulk"), noAddress(2, "page.bulk"), noAddress(3, "page.other")]);
		await waitFor("three FAILED", async () => (await sql(store.db, "SELECT 1 FROM deliveries WHERE kind LIKE 'page.%' AND status = 'FAILED'")).length === 3);
		await sleep(600);
		await page.goto(`${node.url}/admin/mailbox`);
		await page.locator("#app:not([hidden])").waitFor();
		await page.fill("#bulk-kind", "page.bulk");
		await page.click("#bulk-resend");
		await page.locator("#bulk-ok").filter({ hasText: "2 failed deliveries queued to be sent again." }).waitFor();
		// Tried again (and, with no address, FAILED again): two fresh tries, the other kind untouched.
		expect(await sql(store.db, "SELECT kind, updated_at > created_at + interval '0.5 second' AS again FROM deliveries WHERE kind LIKE 'page.%' ORDER BY kind, id")).toEqual([
			{ kind: "page.bulk", again: true },
			{ kind: "page.bulk", again: true },
			{ kind: "page.other", again: false },
		]);
		await checkAdminScreen(page, "admin-mailbox-resend-failed");
		expect(errors).toEqual([]);
		// The routes the page calls still refuse anyone not signed in (the page is no new way in).
		expect((await api(node.url).post("/api/admin/products", { name: "x", price: 1, stock: 1, saleAt: new Date().toISOString() })).status).toBe(401);
	});
});
