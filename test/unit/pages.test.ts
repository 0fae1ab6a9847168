import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Pages } from "../../services/api/pages";

/** The static pages' path rules and asset hashing, on a public/ of its own in a temp folder. */
let dir: string;
let pages: Pages;

beforeAll(() => {
	dir = fs.mkdtempSync(path.join(os.tmpdir(), "pages-"));
	const write = (name: string, text: string) => {
		fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
		fs.writeFileSync(path.join(dir, name), text);
	};
	write("index.html", '<link href="/style.css"><script src="/app.js"></script><a href="/p/1">x</a><img src="/missing.png">');
	write("p.html", "product page");
	write("reset.html", "reset page");
	write("style.css", "body{}");
	write("app.js", "1");
	write("admin/index.html", "dashboard");
	write("admin/products.html", '<header>\n\t<!--#include file="admin/_nav.html" -->\n</header>\n<main>\n\t<!--#include file="admin/_form.html" -->\n</main>');
	write("admin/_nav.html", '<nav><a href="/admin">Dashboard</a><a href="/admin/products">Products</a></nav>\n');
	write("admin/_form.html", "<form>\n\t<input>\n</form>\n");
	write("admin/mailbox.html", "mailbox");
	write("admin/sales.html", "report");
	write(".secret.html", "no");
	write("notes.md", "not served: unknown type");
	pages = new Pages(dir);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const body = (p: string) => pages.resolve(p)?.body.toString() ?? null;

describe("page paths", () => {
	it.each([
		["/", "index.html"],
		["/p", "product page"],
		["/p/12", "product page"],
		["/p/12/", "product page"],
		["/reset", "reset page"],
		["/admin", "dashboard"],
		["/admin/", "dashboard"],
		["/admin/mailbox", "mailbox"],
		["/admin/sales/7", "report"],
	])("%s is %s", (url, expected) => {
		const b = body(url);
		if (expected === "index.html") expect(b).toContain("<link");
		else expect(b).toBe(expected);
	});

	it.each(["/nope", "/p/1/deep", "/../p.html", "/%2e%2e/etc/passwd", "/.secret.html", "/.secret", "/notes.md", "/%E0%A4%A", "/p%00.html"])("%s is no page", url => {
		expect(body(url)).toBeNull();
	});
});

describe("asset hashing", () => {
	it("rewrites local asset references to ?v=<content hash>, leaving links and unknown files alone", () => {
		const html = body("/")!;
		const css = pages.resolve("/style.css")!;
		const js = pages.resolve("/app.js")!;
		expect(html).toContain(`href="/style.css?v=${css.hash}"`);
		expect(html).toContain(`src="/app.js?v=${js.hash}"`);
		expect(html).toContain('href="/p/1"');
		expect(html).toContain('src="/missing.png"');
		expect(css.hash).not.toBe(js.hash);
		expect(css.etag).toBe(`"${css.hash}"`);
	});
});

describe("partials", () => {
	it("puts a shared piece in place, indented as its include line, and marks the page's own link", () => {
		expect(body("/admin/products")).toBe(
			'<header>\n\t<nav><a href="/admin">Dashboard</a><a href="/admin/products" aria-current="page">Products</a></nav>\n</header>\n<main>\n\t<form>\n\t\t<input>\n\t</form>\n</main>'
		);
	});

	it("never serves a partial itself", () => {
		for (const url of ["/admin/_nav.html", "/admin/_nav", "/admin/_form.html"]) expect(body(url)).not.toContain("<nav>");
		expect(body("/admin/_form.html")).not.toContain("<form>");
	});

	it("refuses to start on an include of a file that is not a partial, or not there", () => {
		const bad = fs.mkdtempSync(path.join(os.tmpdir(), "pages-bad-"));
		try {
			fs.writeFileSync(path.join(bad, "index.html"), '<!--#include file="_missing.html" -->');
			expect(() => new Pages(bad)).toThrow(/index\.html includes _missing\.html/);
			fs.writeFileSync(path.join(bad, "other.html"), "x");
			fs.writeFileSync(path.join(bad, "index.html"), '<!--#include file="other.html" -->');
			expect(() => new Pages(bad)).toThrow(/not a partial/);
		} finally {
			fs.rmSync(bad, { recursive: true, force: true });
		}
	});

	it("the admins' pages share their menu and sign-in form from public/admin's partials", () => {
		const real = new Pages(path.join(__dirname, "..", "..", "public"));
		for (const url of ["/admin", "/admin/products", "/admin/mailbox", "/admin/sales/1"]) {
			const html = real.resolve(url)!.body.toString();
			expect(html).toContain('id="login-form"');
			expect(html).toContain('id="sign-out"');
			expect(html).not.toContain("#include");
		}
		expect(real.resolve("/admin/products")!.body.toString()).toContain('<a href="/admin/products" aria-current="page">');
	});
});
