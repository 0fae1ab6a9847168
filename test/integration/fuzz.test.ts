import { randomInt } from "node:crypto";
import net from "node:net";
import { gzipSync } from "node:zlib";
import jwt from "jsonwebtoken";
import { api, request } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { Buyer, createSale, seedBuyers } from "../helpers/sale";

/**
 * Malformed input against every route: bodies, headers, ids, tokens and raw HTTP. Each case is
 * built so that no well-behaved store could accept it (a poisoned field, a bad token, an id that
 * names nothing, a request that is not HTTP), and the store must answer it with a 4xx in the
 * contract's shape: no 5xx, no reset connection, no stack trace, no row written.
 *
 * Seeded and replayable: the seed is printed; `FUZZ_SEED=<seed>` replays the same cases, and
 * `FUZZ_CASES=<n>` sets how many (default 1500). Each case has its own generator derived from
 * (seed, index), so a failing case is reproduced by its index alone.
 */
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : randomInt(1, 2 ** 31);
const CASES = Number(process.env.FUZZ_CASES ?? 1500);
const CONCURRENCY = 12;

const DB = freshDatabaseUrl("fuzz");
let node: StoreNode;
let http: ReturnType<typeof api>;
let port: number;

const ADMIN = { ADMIN_LOGIN_ID: "fuzzboss", ADMIN_PASSWORD: "fuzz-boss-password-1", ADMIN_EMAIL: "boss@example.com" };
let adminToken: string;
let buyer: Buyer;
/** Not open until next year: claims answer SALE_NOT_OPEN. */
let scheduled: string;
/** Open, stock 1, held by `buyer`: claims answer ALREADY_HOLDING or SOLD_OUT. */
let held: string;
let heldSlot: string;

beforeAll(async () => {
	// eslint-disable-next-line no-console
	console.log(`fuzz: FUZZ_SEED=${SEED} FUZZ_CASES=${CASES}`);
	node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, ...ADMIN });
	http = api(node.url);
	port = Number(new URL(node.url).port);
	const login = await http.post("/api/auth/login", { loginId: ADMIN.ADMIN_LOGIN_ID, password: ADMIN.ADMIN_PASSWORD });
	if (login.status !== 200) throw new Error(`admin login: ${login.status} ${login.text}`);
	adminToken = login.body.accessToken;
	[buyer] = await seedBuyers(DB, 1, "fuzzbuyer");
	scheduled = await createSale(DB, 3, new Date(Date.now() + 365 * 24 * 3600_000));
	held = await createSale(DB, 1);
	const c = await http.post(`/api/products/${held}/slots`, undefined, buyer.token);
	if (c.status !== 201) throw new Error(`setup claim: ${c.status} ${c.text}`);
	heldSlot = c.body.slot.id;
	// The grant's follow-up (its jobs) is done before anything is compared.
	await waitFor("the setup grant's jobs", async () => (await sql(DB, "SELECT 1 FROM slots WHERE status = 'HELD' AND jobs_scheduled_at IS NULL")).length === 0);
}, 60_000);

afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

// ---------------------------------------------------------------------------------------------
// A small seeded generator (mulberry32) and the vocabulary of bad input.

type Rng = () => number;
function mulberry32(a: number): Rng {
	return () => {
		a = (a + 0x6d2b79f5) | 0;
		let t = Math.imul(a ^ (a >>> 15), 1 | a);
		t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}
const caseRng = (seed: number, index: number) => mulberry32((seed ^ Math.imul(index + 1, 0x9e3779b1)) | 0);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const chance = (r: Rng, p: number) => r() < p;
const int = (r: Rng, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));

/** Control characters: C0, DEL, C1 (tab and line breaks only where a field is single-line). */
function controlChar(r: Rng, multiline = false): string {
	const k = r();
	if (k < 0.35) return "\u0000";
	if (k < 0.8) {
		const c = int(r, 1, 31);
		return String.fromCharCode(multiline && (c === 9 || c === 10 || c === 13) ? 11 : c);
	}
	if (k < 0.9) return "\u007f";
	return String.fromCharCode(int(r, 0x80, 0x9f));
}

/** `value` with control characters spliced in: the store must refuse it whatever the field. */
function poisoned(r: Rng, value: string, multiline = false): string {
	let s = value;
	const n = int(r, 1, 3);
	for (let i = 0; i < n; i++) {
		const at = int(r, 0, s.length);
		s = s.slice(0, at) + controlChar(r, multiline) + s.slice(at);
	}
	return s;
}

const WEIRD_STRINGS = [
	"", " ", "a".repeat(300), "x".repeat(6000), "' OR 1=1 --", "\"; DROP TABLE users; --", "${7*7}", "{{7*7}}",
	"<script>alert(1)</script>", "../../etc/passwd", "%00", "\\u0000", "😀😀😀", "\ud800", "\udfff", "ａｄｍｉｎ",
	"admin\u200b", "NaN", "Infinity", "-0", "1e309", "0x10", "null", "true", "[]", "{}", "__proto__", "constructor",
];
function junk(r: Rng, depth = 0): unknown {
	const k = int(r, 0, depth > 2 ? 6 : 9);
	switch (k) {
		case 0: return null;
		case 1: return pick(r, [true, false]);
		case 2: return pick(r, [0, -1, 1.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, 2 ** 63, 123456789012345678901234567890]);
		case 3: return pick(r, WEIRD_STRINGS);
		case 4: return poisoned(r, pick(r, WEIRD_STRINGS));
		case 5: return String(int(r, -1000, 10 ** 9));
		case 6: return new Date(int(r, -1e12, 4e12)).toISOString();
		case 7: return Array.from({ length: int(r, 0, 4) }, () => junk(r, depth + 1));
		case 8: {
			const o: Record<string, unknown> = {};
			for (let i = int(r, 0, 4); i > 0; i--) o[pick(r, ["$gt", "$ne", "__proto__", "constructor", "a", "id", "0"])] = junk(r, depth + 1);
			return o;
		}
		default: return JSON.parse('{"__proto__": {"isAdmin": true}, "constructor": {"prototype": {"x": 1}}}');
	}
}

const IDS_NAMING_NOTHING = [
	"0", "-1", "01", "+1", " 1", "1 ", "1.0", "1e3", "0x1", "abc", "%00", "1%00", "%0a1", "%zz", "%", "99999999999999999999999",
	"9223372036854775808", "18446744073709551616", "١", "１", "null", "undefined", "NaN", "..", "%2e%2e", "%2F", "1;2", "1,2",
	"[1]", "{}", "x".repeat(60), "9".repeat(41), "1%20OR%201=1", "%E2%80%AE1", "%C0%80", "%ff%fe",
];
/** An id that names no row: malformed, or well formed and far beyond anything the fixtures made. */
function idNamingNothing(r: Rng): string {
	return chance(r, 0.7) ? pick(r, IDS_NAMING_NOTHING) : String(int(r, 1_000_000, 2_000_000_000));
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
/** Authorization headers that must not authenticate anyone. */
function badAuthorization(r: Rng, as: { id: string; token: string }): string | undefined {
	const exp = Math.floor(Date.now() / 1000) + 600;
	const [h, p, s] = as.token.split(".");
	const k = int(r, 0, 17);
	switch (k) {
		case 0: return undefined;
		case 1: return "Bearer";
		case 2: return "Bearer ";
		case 3: return `Bearer ${pick(r, WEIRD_STRINGS).replace(/[^\x20-\x7e]/g, "x")}`;
		case 4: return `Basic ${as.token}`;
		case 5: return `Bearer ${h}.${b64({ sub: as.id, role: "admin", exp })}.${s}`;
		case 6: return `Bearer ${h}.${p}.${s.slice(0, -3)}${s.endsWith("AAA") ? "BBB" : "AAA"}`;
		case 7: return `Bearer ${b64({ alg: "none", typ: "JWT" })}.${b64({ sub: as.id, role: "admin", exp })}.`;
		case 8: return `Bearer ${jwt.sign({ role: "buyer" }, TEST_SECRET, { subject: as.id, expiresIn: -30 })}`;
		case 9: return `Bearer ${jwt.sign({ role: "admin" }, "another-secret-of-at-least-32-chars!!", { subject: as.id, expiresIn: 600 })}`;
		case 10: return `Bearer ${jwt.sign({ role: "admin" }, TEST_SECRET, { subject: as.id, algorithm: "HS512", expiresIn: 600 })}`;
		case 11: return `Bearer ${jwt.sign({ role: pick(r, ["root", "ADMIN", "", "admin\u0000"]) }, TEST_SECRET, { subject: as.id, expiresIn: 600 })}`;
		case 12: return `Bearer ${jwt.sign({ role: "buyer", sub: pick(r, ["0", "-1", "01", "1e3", "abc", "1\u0000", "", "99999999999999999999"]) }, TEST_SECRET, { expiresIn: 600 })}`;
		case 13: return `Bearer ${jwt.sign({ role: "buyer", sub: 5 }, TEST_SECRET, { expiresIn: 600 })}`;
		case 14: return `Bearer ${h}.${p}`;
		case 15: return `Bearer ${"A".repeat(int(r, 100, 6000))}`;
		case 16: return `Bearer ${as.token}x`;
		default: return `Bearer ${h}.${b64({ sub: as.id, role: "buyer", exp: "soon" })}.${s}`;
	}
}

// ---------------------------------------------------------------------------------------------
// The routes, each with what a valid body looks like and which of its fields are text.

type Auth = "none" | "buyer" | "admin";
interface Route {
	method: string;
	path: string;
	auth: Auth;
	/** A valid body for the route (before poisoning). */
	body?: (r: Rng) => Record<string, unknown>;
	/** Body fields that are text: poisoning one of them makes the request invalid. */
	text?: string[];
	/** True when the route changes rows: it only ever sees cases that cannot succeed. */
	writes?: boolean;
	idempotencyKey?: boolean;
	/** Every body field is optional: any JSON object is a valid body (unknown keys are dropped), so only what is not one is garbage. */
	noRequiredField?: boolean;
}

/** As the gateway's JSON parser reads it (a leading byte order mark is skipped, as RFC 8259 allows). */
function isJsonObject(text: string): boolean {
	try {
		const v = JSON.parse(text.replace(/^\ufeff/, ""));
		return typeof v === "object" && v !== null && !Array.isArray(v);
	} catch {
		return false;
	}
}

const loginId = (r: Rng) => `fz${int(r, 0, 1e9)}`;
const email = (r: Rng) => `fz${int(r, 0, 1e9)}@example.com`;
const ROUTES: Route[] = [
	{ method: "GET", path: "/api/health", auth: "none" },
	{ method: "GET", path: "/api/time", auth: "none" },
	{ method: "GET", path: "/api/products", auth: "none" },
	{ method: "GET", path: "/api/products/:id", auth: "none" },
	{ method: "GET", path: "/metrics", auth: "none" },
	// The pages and their assets (served before moleculer-web).
	{ method: "GET", path: "/", auth: "none" },
	{ method: "GET", path: "/p/:id", auth: "none" },
	{ method: "GET", path: "/reset", auth: "none" },
	{ method: "GET", path: "/admin", auth: "none" },
	{ method: "GET", path: "/:id", auth: "none" },
	{ method: "POST", path: "/api/auth/signup", auth: "none", writes: true, text: ["loginId", "password", "email"],
		body: r => ({ loginId: loginId(r), password: "fuzz-password-1", email: email(r) }) },
	{ method: "POST", path: "/api/auth/login", auth: "none", text: ["loginId", "password"],
		body: r => ({ loginId: pick(r, [ADMIN.ADMIN_LOGIN_ID, loginId(r)]), password: ADMIN.ADMIN_PASSWORD }) },
	{ method: "POST", path: "/api/auth/password/forgot", auth: "none", writes: true, text: ["email"],
		body: r => ({ email: pick(r, [ADMIN.ADMIN_EMAIL, email(r)]) }) },
	{ method: "POST", path: "/api/auth/password/reset", auth: "none", writes: true, text: ["token", "password"],
		body: () => ({ token: "a".repeat(43), password: "fuzz-password-2" }) },
	{ method: "GET", path: "/api/me", auth: "buyer" },
	{ method: "GET", path: "/api/me/slots", auth: "buyer" },
	{ method: "GET", path: "/api/me/payments", auth: "buyer" },
	{ method: "GET", path: "/api/payments/:id", auth: "buyer" },
	{ method: "POST", path: "/api/payments/:id/confirm", auth: "buyer", writes: true },
	{ method: "POST", path: "/api/slots/:id/payments", auth: "buyer", writes: true, idempotencyKey: true, text: ["method"],
		body: r => pick(r, [
			{ method: "card", cardNumber: "4111111111111111" },
			{ method: "easypay", provider: "toss" },
			{ method: "points" },
		]) },
	{ method: "POST", path: "/api/products/:id/slots", auth: "buyer", writes: true },
	{ method: "POST", path: "/api/admin/products", auth: "admin", writes: true, text: ["name", "description", "saleAt"],
		body: r => ({ name: "Fuzz drop", description: "line one\nline two", price: 1000, stock: int(r, 1, 5), saleAt: new Date(Date.now() + 86_400_000).toISOString() }) },
	{ method: "PATCH", path: "/api/admin/products/:id", auth: "admin", writes: true, text: ["name", "description"],
		body: () => ({ name: "Renamed", description: "d", stock: 2 }) },
	{ method: "DELETE", path: "/api/admin/products/:id", auth: "admin", writes: true },
	{ method: "GET", path: "/api/admin/notifications", auth: "admin" },
	{ method: "POST", path: "/api/admin/notifications/:id/resend", auth: "admin", writes: true },
	{ method: "POST", path: "/api/products/:id/notify-me", auth: "buyer", writes: true },
	{ method: "DELETE", path: "/api/products/:id/notify-me", auth: "buyer", writes: true },
	{ method: "GET", path: "/api/products/:id/notify-me", auth: "buyer" },
	{ method: "GET", path: "/api/admin/waitlist", auth: "admin" },
	{ method: "POST", path: "/api/admin/notifications/resend-failed", auth: "admin", writes: true, text: ["kind", "since"], noRequiredField: true,
		body: () => ({ kind: "fuzz.none", since: new Date(Date.now() - 60_000).toISOString() }) },
];
// (fetch refuses to send TRACE and CONNECT.)
const EXTRA_METHODS = ["PUT", "OPTIONS", "HEAD", "PROPFIND", "DELETE", "PATCH"];
const CONTENT_TYPES = [
	"application/json", "application/json; charset=utf-8", "application/json; charset=latin1", "application/json; charset=utf-16",
	"application/json; charset=nope", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
	"application/xml", "application/json, text/plain", "*/*", ";;;", "application/vnd.api+json",
];

interface Case {
	index: number;
	kind: string;
	method: string;
	path: string;
	headers: Record<string, string>;
	body?: string | Buffer;
	/** Raw bytes for a request that is not well-formed HTTP at all. */
	raw?: Buffer;
	/** The route changes rows: any 2xx means a malformed request was accepted. */
	writes?: boolean;
}

/** Ids a route may see. A route that writes sees only ids that name nothing, unless its body is poisoned. */
function idFor(r: Rng, route: Route, safe: boolean): string {
	if (!safe || chance(r, 0.5)) return encodeURIComponent(idNamingNothing(r)).replace(/%25/g, "%");
	if (route.path.startsWith("/api/slots")) return heldSlot;
	return pick(r, [scheduled, held]);
}

function tokenFor(auth: Auth): { id: string; token: string } {
	return auth === "admin" ? { id: "1", token: adminToken } : buyer;
}

function rawCase(r: Rng, index: number): Case {
	const path = pick(r, ROUTES).path.replace(":id", "1");
	const texts = [
		`GET ${path} HTTP/1.1\r\nHost: x\r\nBad Header\r\nConnection: close\r\n\r\n`,
		`GET ${path} HTTP/1.1\r\nHost: x\r\nX-Nul: a\u0000b\r\nConnection: close\r\n\r\n`,
		`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
		`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`,
		`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}`,
		`\u0000\u0001 ${path} HTTP/1.1\r\nHost: x\r\n\r\n`,
		`GET ${path} HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n`,
		`GET /${"a".repeat(int(r, 17_000, 40_000))} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
		`GET ${path} HTTP/1.1\nHost: x\nConnection: close\n\n`,
		`GET ${path}%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
		`GET ${path}?a=%zz&b=%00&__proto__[x]=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
		`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n\u00ff\u00fe\u0000{}`,
		`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \u00ff\u00fe\r\nConnection: close\r\n\r\n`,
		`GET ${path} HTTP/1.1\r\nHost: x\r\n${"X-A: b\r\n".repeat(int(r, 2000, 3000))}Connection: close\r\n\r\n`,
	];
	return { index, kind: "raw", method: "RAW", path, headers: {}, raw: Buffer.from(pick(r, texts), "latin1") };
}

function makeCase(index: number): Case {
	const r = caseRng(SEED, index);
	if (chance(r, 0.08)) return rawCase(r, index);
	const route = pick(r, ROUTES);
	const headers: Record<string, string> = {};
	let kind: string;
	let bodyObj: Record<string, unknown> | undefined = route.body?.(r);
	let rawBody: string | Buffer | undefined;
	let method = route.method;
	let safe = !route.writes;

	// What makes the case unacceptable (and harmless for a route that writes).
	const authBad = route.auth !== "none" && chance(r, 0.25);
	if (authBad) {
		kind = "token";
		const a = route.auth === "admin" && chance(r, 0.3) ? `Bearer ${buyer.token}` : badAuthorization(r, tokenFor(route.auth));
		if (a !== undefined) headers.authorization = a;
		safe = true;
	} else {
		if (route.auth !== "none") headers.authorization = `Bearer ${tokenFor(route.auth).token}`;
		const text = route.text ?? [];
		if (bodyObj && text.length && chance(r, 0.75)) {
			kind = "poisoned-field";
			const field = pick(r, text);
			bodyObj[field] = poisoned(r, String(bodyObj[field] ?? pick(r, WEIRD_STRINGS)), field === "description");
			for (const k of Object.keys(bodyObj)) if (k !== field && chance(r, 0.3)) bodyObj[k] = junk(r);
			if (chance(r, 0.2)) bodyObj[pick(r, ["__proto__", "constructor", "extra", "$where", "role", "id"])] = junk(r);
			safe = true;
		} else if (route.idempotencyKey && chance(r, 0.3)) {
			kind = "idempotency-key";
			headers["idempotency-key"] = pick(r, ["", " ", "k".repeat(101), `a\tb${int(r, 0, 1e9)}`, "\t", "é".repeat(3)]);
			if (headers["idempotency-key"] === "é".repeat(3)) bodyObj = { method: poisoned(r, "card") };
			safe = true;
		} else if (chance(r, 0.5)) {
			kind = "garbage-body";
			const garbage = [
				"{not json", "{\"a\":", "[", "\u0000", "\ufeff{}", "{}}", "{\"loginId\": \"x\",}", "null", "[]", "\"str\"", "1",
				JSON.stringify(junk(r)), "{".repeat(int(r, 10, 5000)) + "}".repeat(int(r, 10, 5000)), "x".repeat(int(r, 1, 40_000)),
				JSON.stringify({ a: "b".repeat(int(r, 16_000, 40_000)) }),
			];
			rawBody = pick(r, route.noRequiredField ? garbage.filter(g => !isJsonObject(g)) : garbage);
			// A garbage body on a route that takes no body is harmless; where it writes, the id names nothing.
		} else {
			kind = "bad-id";
		}
	}
	let path = route.path;
	// A garbage body never holds a route's required fields, so it is unacceptable as it stands.
	if (kind === "garbage-body" && !path.includes(":id")) safe = true;
	if (path.includes(":id")) path = path.replace(":id", idFor(r, route, safe));
	else if (!safe && route.writes) {
		// Nothing above made this case unacceptable: make it so.
		kind = "bad-method";
		method = pick(r, EXTRA_METHODS.filter(m => m !== route.method));
	}

	// Extra noise that must not change the answer's class.
	if (chance(r, 0.3)) headers["content-type"] = pick(r, CONTENT_TYPES);
	if (chance(r, 0.1)) headers["x-forwarded-for"] = pick(r, ["1.2.3.4", "garbage", "::1, 10.0.0.1", "999.1.1.1", "a".repeat(500)]);
	if (chance(r, 0.05)) headers["accept-encoding"] = pick(r, ["gzip", "br", "*", "identity;q=0"]);
	if (chance(r, 0.1)) path += pick(r, ["?", "?a=1", "?loginId=%00", "?__proto__[x]=1", "?a=%zz", "?a[]=1&a[]=2", "?" + "a=1&".repeat(500), "#frag",
		"?status=%00", "?channel=email%0a", "?page=-1", "?page=1e9", "?page=%00", "?status[]=SENT&channel[$ne]=x"]);
	// (Only where no other route could be reached by the same path with a valid token.)
	if (route.auth === "none" && chance(r, 0.05)) method = pick(r, EXTRA_METHODS);

	let body: string | Buffer | undefined = rawBody ?? (bodyObj && method !== "GET" && method !== "HEAD" ? JSON.stringify(bodyObj) : undefined);
	if (body !== undefined && (method === "GET" || method === "HEAD")) body = undefined;
	if (body !== undefined) {
		headers["content-type"] ??= "application/json";
		if (chance(r, 0.08)) {
			headers["content-encoding"] = pick(r, ["gzip", "deflate", "br", "compress", "gzip, gzip", "identity"]);
			body = headers["content-encoding"] === "gzip" && chance(r, 0.5) ? gzipSync(body) : body;
		}
	}
	return { index, kind, method, path, headers, body, writes: route.writes };
}

// ---------------------------------------------------------------------------------------------
// Sending a case, and judging the answer.

interface Outcome {
	status: number;
	text: string;
	problem?: string;
}

function sendRaw(bytes: Buffer): Promise<Outcome> {
	return new Promise(resolve => {
		const socket = net.connect(port, "127.0.0.1");
		let data = "";
		let done = false;
		const finish = (o: Outcome) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			socket.destroy();
			resolve(o);
		};
		const timer = setTimeout(() => finish({ status: 0, text: data, problem: data ? undefined : "no answer in 10 s" }), 10_000);
		socket.on("connect", () => socket.write(bytes));
		socket.on("data", d => (data += d.toString("latin1")));
		socket.on("error", err => finish({ status: 0, text: data, problem: `socket error ${(err as NodeJS.ErrnoException).code ?? err.message}` }));
		socket.on("close", () => {
			const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
			finish(m ? { status: Number(m[1]), text: data } : { status: 0, text: data, problem: "closed without an HTTP answer" });
		});
	});
}

async function send(c: Case): Promise<Outcome> {
	if (c.raw) return sendRaw(c.raw);
	try {
		const res = await fetch(`http://127.0.0.1:${port}${c.path}`, {
			method: c.method,
			headers: c.headers,
			body: c.body,
			redirect: "manual",
			signal: AbortSignal.timeout(10_000),
		});
		return { status: res.status, text: await res.text() };
	} catch (err) {
		const e = err as Error & { cause?: { code?: string; message?: string } };
		return { status: 0, text: "", problem: `request failed: ${e.cause?.code ?? ""} ${e.cause?.message ?? e.message}` };
	}
}

const STACK = /\n\s+at |\bat [^\s]+ \(|\.(?:js|ts):\d+|node_modules|\/work\/|\bdist\//;

function judge(c: Case, o: Outcome): string | null {
	if (o.problem) return o.problem;
	if (o.status >= 500) return `answered ${o.status}`;
	if (STACK.test(o.text)) return "stack trace or source path in the answer";
	if (c.raw) return null;
	if (c.writes && o.status < 300) return `accepted (${o.status})`;
	if (o.status >= 400 && c.method !== "HEAD") {
		let body: Record<string, unknown>;
		try {
			body = JSON.parse(o.text);
		} catch {
			return `a ${o.status} whose body is not JSON`;
		}
		if (typeof body.name !== "string" || typeof body.message !== "string" || body.code !== o.status || typeof body.type !== "string")
			return `a ${o.status} not in the contract's error shape`;
	}
	return null;
}

function describe_(c: Case): string {
	const body = c.raw ? JSON.stringify(c.raw.toString("latin1").slice(0, 300)) : JSON.stringify(typeof c.body === "string" ? c.body.slice(0, 300) : c.body ? "<binary>" : undefined);
	return `#${c.index} [${c.kind}] ${c.method} ${c.path.slice(0, 200)} headers=${JSON.stringify(c.headers).slice(0, 300)} body=${body}`;
}

/**
 * Every table's row count and a digest of its contents: what "no row written" is checked against.
 * Agenda's own tables are left out: its bookkeeping moves by itself. So are the allocator's claim
 * counters (claim_stats, claim_epochs): they record that an answer was given, which every claim
 * that reaches the actor does, whatever its input.
 */
async function tableDigests(): Promise<Record<string, string>> {
	const tables = await sql<{ name: string }>(
		DB,
		`SELECT table_name AS name FROM information_schema.tables
		 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
		   AND table_name NOT IN ('migrations', 'claim_stats', 'claim_epochs') AND table_name NOT LIKE 'agenda%' ORDER BY 1`
	);
	const out: Record<string, string> = {};
	for (const { name } of tables) {
		// The outbox's and the deliveries' rows are marked and pruned in the background: the highest id says whether a row was written.
		const query = name === "outbox" || name === "deliveries"
			? `SELECT 0 AS n, coalesce(max(id), 0)::text AS h FROM ${name}`
			: `SELECT count(*)::int AS n, coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS h FROM "${name}" t`;
		const [row] = await sql<{ n: number; h: string }>(DB, query);
		out[name] = `${row.n} rows, ${row.h}`;
	}
	return out;
}

describe("fuzz: malformed input on every route", () => {
	it(`answers every case with a 4xx in the contract's shape and writes nothing (FUZZ_SEED=${SEED})`, async () => {
		const before = await tableDigests();
		expect(Object.keys(before)).toEqual(expect.arrayContaining(["users", "products", "slots", "payments", "password_reset_tokens", "deliveries"]));
		const failures: string[] = [];
		const statuses = new Map<number, number>();
		let next = 0;
		const started = Date.now();
		await Promise.all(
			Array.from({ length: CONCURRENCY }, async () => {
				while (next < CASES) {
					const c = makeCase(next++);
					const o = await send(c);
					statuses.set(o.status, (statuses.get(o.status) ?? 0) + 1);
					const bad = judge(c, o);
					if (bad) failures.push(`${bad}: ${describe_(c)} -> ${o.status} ${o.text.slice(0, 300)}`);
				}
			})
		);
		// Nothing from the fuzzing is still being worked on behind the answers.
		await new Promise(r => setTimeout(r, 500));
		const after = await tableDigests();
		// eslint-disable-next-line no-console
		console.log(`fuzz: ${CASES} cases in ${Date.now() - started} ms, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
		if (failures.length) throw new Error(`FUZZ_SEED=${SEED}: ${failures.length} bad answers, first ones:\n${failures.slice(0, 15).join("\n")}`);
		expect(after).toEqual(before);
		// Still serving.
		expect((await http.get("/api/health")).status).toBe(200);
		expect((await http.get("/api/me", buyer.token)).status).toBe(200);
	}, 120_000);
});

describe("control characters in accepted text", () => {
	const nul = "\u0000";
	const cases: [string, string, string, () => Record<string, unknown>, Auth][] = [
		["sign-up loginId", "POST", "/api/auth/signup", () => ({ loginId: `nul${nul}x`, password: "long-enough-1", email: "n@example.com" }), "none"],
		["sign-up password", "POST", "/api/auth/signup", () => ({ loginId: "nulpass", password: `long-enough${nul}`, email: "n@example.com" }), "none"],
		["sign-up email", "POST", "/api/auth/signup", () => ({ loginId: "nulmail", password: "long-enough-1", email: `n${nul}@example.com` }), "none"],
		["login loginId", "POST", "/api/auth/login", () => ({ loginId: nul, password: "whatever-1" }), "none"],
		["login password", "POST", "/api/auth/login", () => ({ loginId: "someone", password: `x${nul}` }), "none"],
		["forgot email", "POST", "/api/auth/password/forgot", () => ({ email: `a${nul}@example.com` }), "none"],
		["reset token", "POST", "/api/auth/password/reset", () => ({ token: `t${nul}`, password: "long-enough-1" }), "none"],
		["reset password", "POST", "/api/auth/password/reset", () => ({ token: "t".repeat(43), password: `long-enough${nul}` }), "none"],
		["product name", "POST", "/api/admin/products", () => ({ name: `Drop${nul}`, price: 1, stock: 1, saleAt: new Date().toISOString() }), "admin"],
		["product description (line breaks allowed, NUL not)", "POST", "/api/admin/products", () => ({ name: "Drop", description: `one\ntwo${nul}`, price: 1, stock: 1, saleAt: new Date().toISOString() }), "admin"],
		["product name with a line feed", "POST", "/api/admin/products", () => ({ name: "Drop\nTwo", price: 1, stock: 1, saleAt: new Date().toISOString() }), "admin"],
		["product name with DEL", "POST", "/api/admin/products", () => ({ name: "Drop\u007f", price: 1, stock: 1, saleAt: new Date().toISOString() }), "admin"],
		["product name with a C1 control", "POST", "/api/admin/products", () => ({ name: "Drop\u009b", price: 1, stock: 1, saleAt: new Date().toISOString() }), "admin"],
		["payment card number", "POST", "/api/slots/:slot/payments", () => ({ method: "card", cardNumber: `4111111111111111${nul}` }), "buyer"],
		["payment method", "POST", "/api/slots/:slot/payments", () => ({ method: `points${nul}` }), "buyer"],
	];
	it.each(cases)("answers 422 VALIDATION_ERROR for a control character in the %s", async (_what, method, path, body, auth) => {
		const token = auth === "admin" ? adminToken : auth === "buyer" ? buyer.token : undefined;
		const before = await tableDigests();
		const r = await request(node.url, method, path.replace(":slot", heldSlot), { body: body(), token, headers: { "idempotency-key": `nul-${randomInt(1e9)}` } });
		expect([r.status, r.body?.type]).toEqual([422, "VALIDATION_ERROR"]);
		const reasons = (Array.isArray(r.body.data) ? r.body.data : r.body.data.fields) as { message: string }[];
		expect(reasons.map(d => d.message).join()).toMatch(/must not contain control characters/);
		expect(r.text).not.toContain("\\u0000");
		expect(await tableDigests()).toEqual(before);
	});

	it("answers 422 for a JSON array as a body, also where every field is optional (it had acted as {})", async () => {
		for (const path of ["/api/admin/notifications/resend-failed", "/api/admin/products"]) {
			const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" }, body: "[]" });
			const body = (await res.json()) as { type: string; message: string };
			expect([res.status, body.type, body.message]).toEqual([422, "VALIDATION_ERROR", "The request body must be a JSON object."]);
		}
	});

	it("answers 422 for a control character in a path id, and keeps line breaks in a description", async () => {
		const r = await http.get(`/api/products/1%00`);
		expect([r.status, r.body.type]).toEqual([422, "VALIDATION_ERROR"]);
		const ok = await http.post(
			"/api/admin/products",
			{ name: "Two lines", description: "one\r\ntwo\tthree", price: 1, stock: 1, saleAt: new Date(Date.now() + 86_400_000).toISOString() },
			adminToken
		);
		expect(ok.status).toBe(201);
		expect(ok.body.product.description).toBe("one\r\ntwo\tthree");
		expect((await http.del(`/api/admin/products/${ok.body.product.id}`, adminToken)).status).toBe(204);
	});
});
