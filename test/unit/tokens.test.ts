/**
 * The store's HS256 verifier against jsonwebtoken, decision by decision: on a corpus of forged,
 * tampered, expired, not-yet-valid, malformed and oversized tokens, and on a seeded stream of
 * correctly signed tokens with odd headers and payloads, `verifyHs256` accepts exactly what
 * jsonwebtoken.verify(token, key, { algorithms: ["HS256"] }) accepts and returns the same payload.
 * Then the passport-jwt strategy of lib/auth.ts, driven as the gateway drives it.
 */
import { createHmac, generateKeyPairSync } from "node:crypto";
import type { IncomingMessage } from "node:http";
import jwt from "jsonwebtoken";
import { bearerVerifier } from "../../lib/auth";
import { accessClaims, INVALID_TOKEN, secretKey, signAccessToken, verifyAccessToken, verifyHs256 } from "../../lib/tokens";

const SECRET = "unit-test-secret-0123456789abcdef0123456789abcdef";
const key = secretKey(SECRET);
const NOW = Math.floor(Date.now() / 1000);

const b64 = (v: string | Buffer) => Buffer.from(v).toString("base64url");
const json = (v: unknown) => b64(JSON.stringify(v));
const hs256 = (input: string, secret = SECRET) => createHmac("sha256", secret).update(input).digest("base64url");
/** A token with exactly these header and payload segments, correctly signed with the store's secret. */
const signed = (header: string, payload: string, secret = SECRET) => `${header}.${payload}.${hs256(`${header}.${payload}`, secret)}`;
const HEADER = json({ alg: "HS256", typ: "JWT" });

function theirs(token: unknown): unknown {
	try {
		return jwt.verify(token as string, key, { algorithms: ["HS256"], clockTimestamp: NOW });
	} catch {
		return INVALID_TOKEN;
	}
}

const ours = (token: unknown) => verifyHs256(token, key, NOW);

function corpus(): [string, unknown][] {
	const good = signAccessToken(SECRET, { sub: "42", role: "buyer" }, 3600);
	const [h, p, s] = good.split(".");
	const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
	const claims = { sub: "42", role: "buyer", iat: NOW - 10, exp: NOW + 3600 };
	const flip = (text: string, at: number) => text.slice(0, at) + (text[at] === "A" ? "B" : "A") + text.slice(at + 1);
	const lastChar = s[s.length - 1];
	// The last of 43 characters carries 2 unused bits: same bytes, other text.
	const samePaddingBits = s.slice(0, -1) + String.fromCharCode(lastChar.charCodeAt(0) ^ 1);
	return [
		["the store's own token", good],
		["another buyer's own token", signAccessToken(SECRET, { sub: "900719925474099", role: "admin" }, 60)],
		// alg none and other algorithms
		["alg none, no signature", `${json({ alg: "none", typ: "JWT" })}.${p}.`],
		["alg none, with a signature", `${json({ alg: "none", typ: "JWT" })}.${p}.${s}`],
		["alg none, signed with the secret", signed(json({ alg: "none", typ: "JWT" }), p)],
		["alg HS384 with the same secret", jwt.sign(claims, SECRET, { algorithm: "HS384" })],
		["alg HS512 with the same secret", jwt.sign(claims, SECRET, { algorithm: "HS512" })],
		["alg RS256", jwt.sign(claims, rsa.privateKey, { algorithm: "RS256" })],
		["alg hs256 in lower case", signed(json({ alg: "hs256", typ: "JWT" }), p)],
		["alg missing", signed(json({ typ: "JWT" }), p)],
		["alg as an array", signed(json({ alg: ["HS256"], typ: "JWT" }), p)],
		["alg given twice, last none", signed(b64('{"alg":"HS256","alg":"none","typ":"JWT"}'), p)],
		["alg given twice, last HS256", signed(b64('{"alg":"none","alg":"HS256","typ":"JWT"}'), p)],
		// tampered
		["header tampered (typ changed)", `${json({ alg: "HS256", typ: "JOSE" })}.${p}.${s}`],
		["payload tampered (other sub)", `${h}.${json({ ...JSON.parse(Buffer.from(p, "base64url").toString()), sub: "43" })}.${s}`],
		["payload tampered (one character)", `${h}.${flip(p, 5)}.${s}`],
		["signature tampered (one character)", `${h}.${p}.${flip(s, 10)}`],
		["signature with other padding bits", `${h}.${p}.${samePaddingBits}`],
		["signature truncated", `${h}.${p}.${s.slice(0, -1)}`],
		["signature padded with =", `${h}.${p}.${s}=`],
		["signature in standard base64", `${h}.${p}.${Buffer.from(s, "base64url").toString("base64")}`],
		["signed with another secret", signAccessToken("another-secret-entirely", { sub: "42", role: "buyer" }, 3600)],
		["signed with the secret plus one byte", signed(h, p, SECRET + "x")],
		// expiry and not-before
		["expired a second ago", signed(HEADER, json({ ...claims, exp: NOW - 1 }))],
		["expires exactly now", signed(HEADER, json({ ...claims, exp: NOW }))],
		["expires in a second", signed(HEADER, json({ ...claims, exp: NOW + 1 }))],
		["exp as a string", signed(HEADER, json({ ...claims, exp: String(NOW + 100) }))],
		["exp null", signed(HEADER, json({ ...claims, exp: null }))],
		["no exp at all", signed(HEADER, json({ sub: "42", role: "buyer", iat: NOW }))],
		["not before a second from now", signed(HEADER, json({ ...claims, nbf: NOW + 1 }))],
		["not before now", signed(HEADER, json({ ...claims, nbf: NOW }))],
		["nbf as a string", signed(HEADER, json({ ...claims, nbf: String(NOW - 5) }))],
		["iat in the future (not checked by either)", signed(HEADER, json({ ...claims, iat: NOW + 1000 }))],
		// malformed
		["empty", ""],
		["one word", "abc"],
		["two parts", `${h}.${p}`],
		["four parts", `${good}.${s}`],
		["dots only", ".."],
		["empty header", `.${p}.${s}`],
		["empty payload", signed(h, "").replace(/^([^.]*)\.\./, "$1..")],
		["a space inside", `${h}.${p} .${s}`],
		["standard base64 characters", `${h}.${p.replace(/-/g, "+")}+.${s}`],
		["header not JSON", signed(b64("{alg:HS256}"), p)],
		["header JSON null", signed(b64("null"), p)],
		["header JSON 0", signed(b64("0"), p)],
		["header a JSON string", signed(b64('"HS256"'), p)],
		["payload not JSON, typ JWT", signed(HEADER, b64("not json"))],
		["payload not JSON, no typ", signed(json({ alg: "HS256" }), b64("not json"))],
		["payload JSON null, typ JWT", signed(HEADER, b64("null"))],
		["payload JSON null, no typ", signed(json({ alg: "HS256" }), b64("null"))],
		["payload a number, typ JWT", signed(HEADER, b64("12"))],
		["payload an array", signed(HEADER, b64("[1,2]"))],
		["payload with a BOM", signed(HEADER, b64("\ufeff" + JSON.stringify(claims)))],
		["header in latin1 bytes", signed(b64(Buffer.from('{"alg":"HS256","typ":"JWT","x":"\xe9"}', "latin1")), p)],
		["not a string", 42],
		["undefined", undefined],
		["an object", { token: good }],
		// oversized
		["oversized, correctly signed (100 kB payload)", signed(HEADER, json({ ...claims, pad: "x".repeat(100_000) }))],
		["oversized garbage", "a".repeat(50_000) + "." + "b".repeat(50_000) + "." + "c".repeat(43)],
		["oversized, 70,000 dots", ".".repeat(70_000)],
	];
}

describe("verifyHs256 decides as jsonwebtoken does", () => {
	it.each(corpus())("%s", (_name, token) => {
		expect(ours(token)).toEqual(theirs(token));
	});

	it("agrees on 3,000 seeded tokens with odd but correctly signed headers and payloads", () => {
		let a = 7;
		const random = () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 4294967296);
		const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];
		const headers = [
			{ alg: "HS256", typ: "JWT" },
			{ alg: "HS256" },
			{ alg: "HS256", typ: "jwt" },
			{ alg: "HS256", typ: "JWT", kid: "k1" },
			{ typ: "JWT", alg: "HS256" },
			{ alg: "HS384", typ: "JWT" },
			{ alg: "none" },
			{ alg: "HS256", typ: 1 },
		];
		const times = [undefined, null, NOW - 100, NOW - 1, NOW, NOW + 1, NOW + 100, String(NOW), true, 1.5, -1];
		const payloadTexts = () => {
			const o: Record<string, unknown> = {};
			if (random() < 0.9) o.sub = pick(["42", "0", "", 42, "00", "12345678901234567890", null]);
			if (random() < 0.9) o.role = pick(["buyer", "admin", "root", null]);
			if (random() < 0.7) o.iat = pick(times);
			if (random() < 0.7) o.exp = pick(times);
			if (random() < 0.3) o.nbf = pick(times);
			const text = JSON.stringify(o);
			return pick([text, text, text, text.slice(0, -1), "null", "[]", '"x"', "7", `${text} `, ` ${text}`]);
		};
		let accepted = 0;
		for (let i = 0; i < 3000; i++) {
			const headerText = JSON.stringify(pick(headers));
			const token = signed(b64(headerText), b64(payloadTexts()));
			const mine = ours(token);
			expect([token, mine]).toEqual([token, theirs(token)]);
			if (mine !== INVALID_TOKEN) accepted++;
		}
		// Both sides of the decision were exercised.
		expect(accepted).toBeGreaterThan(300);
		expect(accepted).toBeLessThan(2700);
	});
});

describe("the store's claims", () => {
	it("accepts its own tokens, with the time they were issued", () => {
		const token = signAccessToken(SECRET, { sub: "42", role: "admin" }, 60);
		const c = verifyAccessToken(SECRET, token)!;
		expect(c).toMatchObject({ sub: "42", role: "admin" });
		expect(Math.abs(c.iat! - Math.floor(Date.now() / 1000))).toBeLessThanOrEqual(2);
		expect(c.exp).toBe(c.iat! + 60);
	});

	it("refuses verified payloads that are not the store's access tokens", () => {
		for (const p of [null, "x", 7, [], {}, { sub: 42, role: "buyer" }, { sub: "0", role: "buyer" }, { sub: "042", role: "buyer" }, { sub: "1234567890123456789", role: "buyer" }, { sub: "42", role: "root" }, { sub: "42" }])
			expect(accessClaims(p)).toBeNull();
		expect(accessClaims({ sub: "42", role: "buyer" })).toEqual({ sub: "42", role: "buyer", iat: undefined, exp: undefined });
	});
});

describe("the passport-jwt strategy (lib/auth.ts)", () => {
	const verify = bearerVerifier(SECRET);
	const req = (authorization?: string) => ({ headers: authorization === undefined ? {} : { authorization } }) as unknown as IncomingMessage;

	it("turns a good bearer token into the user, with iat", async () => {
		const token = signAccessToken(SECRET, { sub: "42", role: "buyer" }, 60);
		const user = await verify(req(`Bearer ${token}`));
		expect(user).toMatchObject({ id: "42", role: "buyer" });
		expect(typeof user!.iat).toBe("number");
		// passport-jwt's header parsing: the scheme in any case, any whitespace after it.
		expect(await verify(req(`bearer\t${token}`))).toMatchObject({ id: "42" });
	});

	it("refuses every token the corpus refuses, and what is no bearer token", async () => {
		// The strategy reads the clock itself: the corpus's one-second edges are left to the test above.
		const edges = ["expired a second ago", "expires exactly now", "expires in a second", "not before a second from now", "not before now"];
		for (const [name, token] of corpus()) {
			if (typeof token !== "string" || edges.includes(name)) continue;
			const expected = theirs(token);
			const claims = expected === INVALID_TOKEN ? null : accessClaims(expected);
			const user = await verify(req(`Bearer ${token}`));
			expect([name, user && { id: user.id, role: user.role }]).toEqual([name, claims && { id: claims.sub, role: claims.role }]);
			// The claim route's synchronous form decides the same.
			const now = verify.now(req(`Bearer ${token}`));
			expect([name, now && { id: now.id, role: now.role }]).toEqual([name, claims && { id: claims.sub, role: claims.role }]);
		}
		const token = signAccessToken(SECRET, { sub: "42", role: "buyer" }, 60);
		for (const h of [undefined, "", token, `Basic ${token}`, `Bearer`, `Token ${token}`]) {
			expect(await verify(req(h))).toBeNull();
			expect(verify.now(req(h))).toBeNull();
		}
	});

	it("leaves other passport-jwt strategies on jsonwebtoken (their keys and options are not the store's)", async () => {
		const { Strategy, ExtractJwt } = await import("passport-jwt");
		const other = new Strategy(
			{ jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(), secretOrKey: SECRET, algorithms: ["HS384"], issuer: "elsewhere" },
			(payload: unknown, done: (e: unknown, u?: unknown) => void) => done(null, payload)
		);
		const run = (token: string) =>
			new Promise(resolve => {
				const a = Object.create(other);
				a.success = (u: unknown) => resolve(u);
				a.fail = () => resolve(null);
				a.error = () => resolve(null);
				a.authenticate(req(`Bearer ${token}`), {});
			});
		expect(await run(jwt.sign({ sub: "1" }, SECRET, { algorithm: "HS384", issuer: "elsewhere" }))).toMatchObject({ sub: "1", iss: "elsewhere" });
		expect(await run(jwt.sign({ sub: "1" }, SECRET, { algorithm: "HS384", issuer: "other" }))).toBeNull();
	});
});
