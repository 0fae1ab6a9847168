import fs from "node:fs";
import path from "node:path";
import { Browser, BrowserContext, chromium, Page } from "playwright-core";
import { track, untrack } from "./resources";

/**
 * A real browser for page tests: Debian's chromium driven by playwright-core (nothing downloads
 * a browser of its own). `.ci/run` installs chromium with apt when it is missing.
 */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Where page tests save their screenshots; CI keeps this folder as its artifacts. */
export const SCREENSHOTS = path.join(__dirname, "..", "..", "artifacts", "screenshots");

export async function launchBrowser(): Promise<Browser> {
	const browser = await chromium.launch({
		executablePath: CHROMIUM,
		headless: true,
		// As root, without a sandbox; the background-networking flags keep chromium off the closed network.
		args: [
			"--no-sandbox",
			"--disable-gpu",
			"--disable-quic",
			"--no-first-run",
			"--disable-background-networking",
			"--disable-component-update",
			"--disable-sync",
			"--disable-dev-shm-usage",
		],
	});
	const key = {};
	track(key, { name: "chromium", close: () => browser.close() });
	browser.once("disconnected", () => untrack(key));
	return browser;
}

/** A phone-sized page (360 × 740), in the given language. */
export async function phonePage(browser: Browser, locale = "en-US"): Promise<{ context: BrowserContext; page: Page }> {
	const context = await browser.newContext({ viewport: { width: 360, height: 740 }, locale, deviceScaleFactor: 1, hasTouch: true, isMobile: true });
	const page = await context.newPage();
	return { context, page };
}

export async function screenshot(page: Page, name: string): Promise<string> {
	fs.mkdirSync(SCREENSHOTS, { recursive: true });
	const file = path.join(SCREENSHOTS, `${name}.png`);
	await page.screenshot({ path: file, fullPage: true });
	return file;
}

/** Runs axe-core (from npm) in the page; returns the serious and critical violations. */
export async function seriousA11yViolations(page: Page): Promise<{ id: string; impact: string; help: string; nodes: number }[]> {
	const source = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
	await page.addScriptTag({ content: source });
	const result = await page.evaluate(async () => {
		const axe = (globalThis as any).axe;
		return axe.run((globalThis as any).document, { resultTypes: ["violations"] });
	});
	return (result.violations as { id: string; impact: string; help: string; nodes: unknown[] }[])
		.filter(v => v.impact === "serious" || v.impact === "critical")
		.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
}
