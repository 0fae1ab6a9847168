import type { Browser, BrowserContext, Page } from "playwright-core";
import { seriousA11yViolations, screenshot } from "./browser";

/**
 * A phone-sized page as test/helpers/browser.ts's phonePage makes it, but with the pages' CSP
 * bypassed: the axe-core check injects a script of its own. (One test runs under the CSP.)
 */
export async function shopPage(browser: Browser, locale = "en-US"): Promise<{ context: BrowserContext; page: Page }> {
	const context = await browser.newContext({ viewport: { width: 360, height: 740 }, locale, deviceScaleFactor: 1, hasTouch: true, isMobile: true, bypassCSP: true });
	return { context, page: await context.newPage() };
}

/** What the buyers' page tests check on every screen: no serious axe finding, no sideways scroll at 360 px. */
export async function checkScreen(page: Page, name: string): Promise<void> {
	const violations = await seriousA11yViolations(page);
	expect({ screen: name, violations }).toEqual({ screen: name, violations: [] });
	const width = await page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth as number);
	expect({ screen: name, width: Math.min(width, 360) }).toEqual({ screen: name, width });
	await screenshot(page, name);
}

/** Presses a control with the keyboard: focus, then Enter (what a keyboard-only buyer does). */
export async function press(page: Page, selector: string, key = "Enter"): Promise<void> {
	await page.locator(selector).focus();
	await page.keyboard.press(key);
}

/** Types into a field with the keyboard. */
export async function type(page: Page, selector: string, text: string): Promise<void> {
	await page.locator(selector).focus();
	await page.keyboard.type(text);
}

/** Signs up on a product page, by keyboard, and waits until the page says who is signed in. */
export async function signUpOnPage(page: Page, loginId: string, email: string, password: string): Promise<void> {
	await press(page, "#show-signup");
	await type(page, "#signup-id", loginId);
	await type(page, "#signup-email", email);
	await type(page, "#signup-password", password);
	await page.keyboard.press("Enter");
	await page.locator("#who-name").filter({ hasText: loginId }).waitFor({ timeout: 15_000 });
}

export async function signInOnPage(page: Page, loginId: string, password: string): Promise<void> {
	await type(page, "#login-id", loginId);
	await type(page, "#login-password", password);
	await page.keyboard.press("Enter");
}

/** The text of an element, trimmed. */
export const textOf = async (page: Page, selector: string) => ((await page.locator(selector).textContent()) ?? "").trim();
