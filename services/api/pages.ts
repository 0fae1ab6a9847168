import { createHash } from "node:crypto";
import fs from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { gzipSync } from "node:zlib";

/**
 * The buyers' and operators' pages (public/): static files the gateway serves from memory, so a
 * crowd's page loads cost no service call and no disk read.
 *
 * Read once at start. Every asset gets a content hash; the HTML's references to local assets are
 * rewritten to `?v=<hash>`, and an asset asked for with its current hash is cached for a year
 * (`immutable`). HTML itself is `no-cache` with a strong ETag: a browser revalidates it and gets a
 * 304 until a deploy changes it, which also changes the hashes it points to. Text is kept gzipped
 * too, for phones.
 *
 * Paths: `/` is index.html; `/a/b` is `a/b.html` or `a/b/index.html`; when neither exists, the
 * last segment is a parameter of the parent's page (`/p/12` is p.html, `/admin/sales/7` is
 * admin/sales.html). The page reads its parameter from `location`.
 */

interface StaticFile {
	body: Buffer;
	gzip: Buffer | null;
	type: string;
	etag: string;
	hash: string;
	html: boolean;
}

const TYPES: Record<string, string> = {
	".html": "text/html; charset=utf-8",
	".js": "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
	".png": "image/png",
	".ico": "image/x-icon",
	".json": "application/json; charset=utf-8",
	".webmanifest": "application/manifest+json",
	".txt": "text/plain; charset=utf-8",
};

/** Headers every page answer carries. no-referrer: the reset page's URL holds a token. */
const COMMON_HEADERS = {
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy": "no-referrer",
	"X-Frame-Options": "DENY",
	Vary: "Accept-Encoding",
};

/** Pages load their own scripts and styles only; nothing inline, nothing from elsewhere. */
const PAGE_CSP =
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const YEAR = "public, max-age=31536000, immutable";

/** Where public/ is, from services/api (ts-jest) or dist/services/api (built). */
export function publicDir(): string | null {
	for (const up of ["../..", "../../.."]) {
		const dir = path.resolve(__dirname, up, "public");
		if (fs.existsSync(path.join(dir, "index.html"))) return dir;
	}
	return null;
}

function walk(dir: string, base = ""): string[] {
	const out: string[] = [];
	for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
		if (entry.name.startsWith(".")) continue;
		const rel = base ? `${base}/${entry.name}` : entry.name;
		if (entry.isDirectory()) out.push(...walk(path.join(dir, entry.name), rel));
		else if (entry.isFile() && TYPES[path.extname(entry.name)]) out.push(rel);
	}
	return out;
}

const hashOf = (b: Buffer) => createHash("sha256").update(b).digest("base64url").slice(0, 16);

function entry(body: Buffer, type: string, html: boolean): StaticFile {
	const hash = hashOf(body);
	const compressible = /^(text\/|application\/(json|manifest)|image\/svg)/.test(type) && body.length > 1024;
	return { body, gzip: compressible ? gzipSync(body, { level: 9 }) : null, type, etag: `"${hash}"`, hash, html };
}

/**
 * Pieces several pages share (the admins' menu and sign-in form) live once, in a file whose name
 * starts with "_": `<!--#include file="admin/_nav.html" -->` on a line of its own is replaced,
 * when the pages are read, by that file, indented as the line was. A partial is never served.
 */
const INCLUDE = /^([ \t]*)<!--#include file="([^"]+)" -->[ \t]*$/gm;
const isPartial = (name: string) => path.posix.basename(name).startsWith("_");

function withPartials(page: string, text: string, raw: Map<string, Buffer>): string {
	return text.replace(INCLUDE, (_all, indent: string, ref: string) => {
		const part = raw.get(ref);
		// A typo here would serve a page without its menu: refuse to start instead.
		if (!part || !isPartial(ref)) throw new Error(`public/${page} includes ${ref}, which is not a partial ("_" name) in public/`);
		return part.toString("utf8").trimEnd().split("\n").map(line => (line ? indent + line : line)).join("\n");
	});
}

/** The link to the page itself says so (aria-current), wherever the menu came from. */
function markCurrentPage(text: string, page: string): string {
	const own = "/" + page.replace(/(^|\/)index\.html$/, "").replace(/\.html$/, "");
	return text.replace(new RegExp(`<a href="${own.replace(/[/.]/g, "\\$&")}">`, "g"), `<a href="${own}" aria-current="page">`);
}

export class Pages {
	private readonly files = new Map<string, StaticFile>();

	constructor(dir: string) {
		const names = walk(dir);
		const raw = new Map(names.map(n => [n, fs.readFileSync(path.join(dir, n))]));
		for (const [name, body] of raw) if (!name.endsWith(".html")) this.files.set(name, entry(body, TYPES[path.extname(name)], false));
		for (const [name, body] of raw) {
			if (!name.endsWith(".html") || isPartial(name)) continue;
			// src="/app.js" -> src="/app.js?v=<hash>": the browser keeps the asset until it changes.
			const text = markCurrentPage(withPartials(name, body.toString("utf8"), raw), name).replace(/\b(src|href)="\/([^"?#]+)"/g, (all, attr: string, ref: string) => {
				const f = this.files.get(ref);
				return f ? `${attr}="/${ref}?v=${f.hash}"` : all;
			});
			this.files.set(name, entry(Buffer.from(text), TYPES[".html"], true));
		}
	}

	get size(): number {
		return this.files.size;
	}

	/** The file a URL path names, by the rules above; null when none. */
	resolve(pathname: string): StaticFile | null {
		let p: string;
		try {
			p = decodeURIComponent(pathname);
		} catch {
			return null;
		}
		if (p.includes("\0") || p.split("/").some(s => s === ".." || s.startsWith("."))) return null;
		p = p.replace(/^\/+|\/+$/g, "");
		if (p === "") return this.files.get("index.html") ?? null;
		const exact = this.files.get(p);
		if (exact) return exact;
		const page = (q: string) => this.files.get(`${q}.html`) ?? this.files.get(`${q}/index.html`) ?? null;
		const direct = page(p);
		if (direct) return direct;
		const cut = p.lastIndexOf("/");
		return cut > 0 ? page(p.slice(0, cut)) : null;
	}

	/** Answers a GET or HEAD for a page or an asset; false when it is not one (moleculer-web's turn). */
	handle(req: IncomingMessage, res: ServerResponse): boolean {
		if (req.method !== "GET" && req.method !== "HEAD") return false;
		const url = req.url ?? "/";
		if (url.startsWith("/api/") || url === "/api" || url.startsWith("/metrics")) return false;
		const q = url.indexOf("?");
		const file = this.resolve(q < 0 ? url : url.slice(0, q));
		if (!file) return false;
		const version = q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get("v");
		const headers: Record<string, string | number> = {
			...COMMON_HEADERS,
			"Content-Type": file.type,
			ETag: file.etag,
			"Cache-Control": !file.html && version === file.hash ? YEAR : "no-cache",
		};
		if (file.html) headers["Content-Security-Policy"] = PAGE_CSP;
		if (req.headers["if-none-match"] === file.etag) {
			res.writeHead(304, headers);
			res.end();
			return true;
		}
		const gzip = file.gzip && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
		const body = gzip ? file.gzip! : file.body;
		if (gzip) headers["Content-Encoding"] = "gzip";
		headers["Content-Length"] = body.length;
		res.writeHead(200, headers);
		res.end(req.method === "HEAD" ? undefined : body);
		return true;
	}
}

/** The pages, or null when this install has no public/ (an api-only image, say). */
export function loadPages(): Pages | null {
	const dir = publicDir();
	return dir ? new Pages(dir) : null;
}

/** The addresses `npm start` prints. The mailbox exists when no SMTP_URL is set. */
export function shopAddresses(base: string, mailbox: boolean): string[] {
	return [
		`Shop:    ${base}/`,
		`Admin:   ${base}/admin`,
		...(mailbox ? [`Mailbox: ${base}/admin/mailbox (e-mail stays here while SMTP_URL is unset)`] : []),
	];
}
