import type { WireDelivery } from "../../contracts";
import type { Browser } from "playwright-core";
import { launchBrowser } from "../helpers/browser";
import { api } from "../helpers/http";
import { waitFor } from "../helpers/nodes";
import { checkScreen, press, shopPage, signInOnPage, signUpOnPage, textOf, type } from "../helpers/shop";
import { storeForFile } from "../helpers/store";

/**
 * The password journey in the browser: forgot password on a product page, the e-mail in the
 * store's local mailbox (read as an admin from GET /api/admin/notifications?channel=email), the
 * reset page, and signing in with the new password.
 */
// A browser on a shared, loaded machine: sign-ups hash passwords, axe walks the page.
jest.setTimeout(120_000);

const store = storeForFile("pagespw", {
	ADMIN_LOGIN_ID: "boss",
	ADMIN_PASSWORD: "boss-password-1",
	ADMIN_EMAIL: "boss@example.com",
});
let http: ReturnType<typeof api>;
let browser: Browser;
let admin: string;

beforeAll(async () => {
	http = api(store.node.url);
	const login = await http.post("/api/auth/login", { loginId: "boss", password: "boss-password-1" });
	expect(login.status).toBe(200);
	admin = login.body.accessToken;
	browser = await launchBrowser();
});
afterAll(async () => {
	await browser?.close();
});

type Delivery = WireDelivery;

/** The reset link from the newest reset e-mail to `email`, as the local mailbox holds it. */
async function resetLinkFrom(email: string): Promise<string> {
	let link = "";
	await waitFor(
		`the reset e-mail to ${email} in the mailbox`,
		async () => {
			const r = await http.get<{ notifications: Delivery[] }>("/api/admin/notifications?channel=email", admin);
			expect(r.status).toBe(200);
			const mail = r.body.notifications.find(n => n.recipient === email && n.kind === "password.reset");
			const m = mail && /(\/reset\?token=[\w-]+)/.exec(mail.text);
			if (m) link = m[1];
			return !!m;
		},
		15_000
	);
	return link;
}

describe("the password journey", () => {
	it("asks for a reset on the product page, follows the e-mailed link to /reset, sets a new password and signs in with it", async () => {
		const created = await http.post("/api/admin/products", { name: "Reset Runner", price: 59000, stock: 3, saleAt: new Date(Date.now() + 3600_000).toISOString() }, admin);
		expect(created.status).toBe(201);
		const productPath = `/p/${created.body.product.id}`;
		const { context, page } = await shopPage(browser, "en-US");
		await page.goto(store.node.url + productPath);
		await signUpOnPage(page, "carol", "carol@example.com", "carol-password-1");
		await press(page, "#sign-out");
		await page.locator("#login-form").waitFor();

		await press(page, "#show-forgot");
		expect(await page.evaluate(() => (globalThis as any).document.activeElement.id)).toBe("forgot-email");
		await type(page, "#forgot-email", "carol@example.com");
		await page.keyboard.press("Enter");
		await page.locator("#account-message").filter({ hasText: "a reset link is on its way" }).waitFor({ timeout: 15_000 });
		await checkScreen(page, "forgot-sent");

		const link = await resetLinkFrom("carol@example.com");
		await page.goto(store.node.url + link);
		await page.locator("#reset-form").waitFor();
		// The token leaves the address bar at once.
		expect(new URL(page.url()).search).toBe("");
		await checkScreen(page, "reset-form");

		await type(page, "#new-password", "carol-new-password-2");
		await type(page, "#repeat-password", "carol-new-password-3");
		await page.keyboard.press("Enter");
		expect(await textOf(page, "#reset-message")).toBe("The two passwords differ.");
		await page.locator("#repeat-password").fill("");
		await type(page, "#repeat-password", "carol-new-password-2");
		await page.keyboard.press("Enter");
		await page.locator("#reset-message").filter({ hasText: "Your password is changed" }).waitFor({ timeout: 15_000 });
		await checkScreen(page, "reset-done");

		// Back to the product page the reset was asked from, and in with the new password.
		expect(await page.locator("#continue").getAttribute("href")).toBe(productPath);
		await press(page, "#continue");
		await page.waitForURL(store.node.url + productPath);
		await page.locator("#login-form").waitFor();
		await signInOnPage(page, "carol", "carol-new-password-2");
		await page.locator("#who-name").filter({ hasText: "carol" }).waitFor({ timeout: 15_000 });
		expect((await http.post("/api/auth/login", { loginId: "carol", password: "carol-password-1" })).status).toBe(401);

		// The link works once.
		await page.goto(store.node.url + link);
		await type(page, "#new-password", "carol-third-password-4");
		await type(page, "#repeat-password", "carol-third-password-4");
		await page.keyboard.press("Enter");
		await page.locator("#reset-message").filter({ hasText: "This link is wrong, used or expired" }).waitFor({ timeout: 15_000 });
		await context.close();
	});

	it("tells a visitor without a token what the reset page is for", async () => {
		const { context, page } = await shopPage(browser, "ko-KR");
		await page.goto(`${store.node.url}/reset`);
		await page.locator("#reset-message").filter({ hasText: "재설정 이메일의 링크로 열어 주세요." }).waitFor();
		expect(await page.locator("#reset-form").isHidden()).toBe(true);
		await checkScreen(page, "reset-no-token-ko");
		await context.close();
	});
});
