import { createHmac, createSecretKey, KeyObject } from "node:crypto";
import jwt from "jsonwebtoken";
import type { Role } from "../entities/User";

/**
 * Access tokens: HS256 JWTs signed with jsonwebtoken and verified here on node:crypto.
 *
 * jsonwebtoken's verify (jws → jwa → Hmac, base64 and JSON twice, option cloning) cost ~50 µs
 * per request under load, a fifth of a sold-out answer. `verifyHs256` makes exactly the same
 * accept/reject decisions for HS256 with a secret key (test/unit/tokens.test.ts compares the two
 * on a corpus of forged, tampered, expired, not-yet-valid, malformed and oversized tokens) at a
 * few µs: one HMAC, one constant-time compare, one JSON.parse, and the header of the store's own
 * tokens recognised without parsing it.
 */
const keys = new Map<string, KeyObject>();
/** Keys made here: only these take the fast verifier (see lib/auth.ts). */
const ownKeys = new WeakSet<KeyObject>();

/** jsonwebtoken spends ~400 µs when given a string secret (it tries it as a PEM key first); every node makes its KeyObject once. */
export function secretKey(secret: string): KeyObject {
	let key = keys.get(secret);
	if (!key) {
		key = createSecretKey(Buffer.from(secret, "utf8"));
		keys.set(secret, key);
		ownKeys.add(key);
	}
	return key;
}

export function isOwnKey(key: unknown): key is KeyObject {
	return key instanceof KeyObject && ownKeys.has(key);
}

export const JWT_ALGORITHM = "HS256" as const;

export interface AccessClaims {
	sub: string;
	role: Role;
}

/** What a verified access token says: who, in which role, and when it was issued (seconds; absent when the token has no numeric `iat`). */
export interface VerifiedClaims extends AccessClaims {
	iat: number | undefined;
	exp: number | undefined;
}

/**
 * `issuedAt` (unix seconds) sets `iat` (and `exp` from it): the users service passes the database's
 * clock, never earlier than the user's "tokens not before", so a token issued in the same second as
 * a password reset, just after it, is not revoked by it.
 */
export function signAccessToken(secret: string, claims: AccessClaims, expiresInSeconds: number, issuedAt?: number): string {
	return jwt.sign(issuedAt === undefined ? { role: claims.role } : { role: claims.role, iat: issuedAt }, secretKey(secret), {
		algorithm: JWT_ALGORITHM,
		subject: String(claims.sub),
		expiresIn: expiresInSeconds,
	});
}

/** `verifyHs256`'s answer for a token jsonwebtoken would refuse. */
export const INVALID_TOKEN: unique symbol = Symbol("invalid token");

/** `{"alg":"HS256","typ":"JWT"}`, the header jsonwebtoken writes on every token the store signs. */
const OWN_HEADER = Buffer.from(JSON.stringify({ alg: JWT_ALGORITHM, typ: "JWT" })).toString("base64url");

/** base64url's alphabet, as jws's shape check allows it (`/^[a-zA-Z0-9\-_]+?\.[a-zA-Z0-9\-_]+?\.([a-zA-Z0-9\-_]+)?$/`). */
const B64URL = new Uint8Array(128);
for (const ch of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") B64URL[ch.charCodeAt(0)] = 1;

/** Where jwsShape found the two dots (the verifier runs to completion synchronously). */
let dot1 = -1;
let dot2 = -1;

/**
 * jws's shape check in one pass, without the regex: exactly two dots, only base64url characters,
 * header and payload non-empty (the signature may be empty here; it is refused later).
 */
function jwsShape(token: string): boolean {
	dot1 = -1;
	dot2 = -1;
	for (let i = 0; i < token.length; i++) {
		const c = token.charCodeAt(i);
		if (c === 46) {
			if (dot1 < 0) dot1 = i;
			else if (dot2 < 0) dot2 = i;
			else return false;
		} else if (c >= 128 || B64URL[c] === 0) return false;
	}
	return dot1 >= 1 && dot2 >= dot1 + 2;
}

/** A secret key's bytes, exported once: an Hmac made from bytes costs ~15% less than one made from the KeyObject. */
const rawKeys = new WeakMap<KeyObject, Buffer>();
function rawKey(key: KeyObject): Buffer {
	let raw = rawKeys.get(key);
	if (!raw) {
		raw = key.export();
		rawKeys.set(key, raw);
	}
	return raw;
}

/** Constant-time comparison of two ASCII strings (no early exit on the first difference). */
function sameText(a: string, b: string): boolean {
	if (a.length !== b.length) return false;
	let diff = 0;
	for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
	return diff === 0;
}

function parseJson(text: string): unknown {
	try {
		return JSON.parse(text);
	} catch {
		return undefined;
	}
}

/**
 * jsonwebtoken.verify(token, key, { algorithms: ["HS256"] }), rebuilt: the payload it would
 * return, or INVALID_TOKEN where it would throw. Same order of checks, same leniencies (base64 of
 * either alphabet, a payload that is not JSON unless `typ` is "JWT", no `exp` = no expiry).
 */
export function verifyHs256(token: unknown, key: KeyObject, nowSeconds = Math.floor(Date.now() / 1000)): unknown {
	if (typeof token !== "string" || token.length === 0) return INVALID_TOKEN;
	if (!jwsShape(token)) return INVALID_TOKEN;
	if (key.type !== "secret") return INVALID_TOKEN; // "secretOrPublicKey must be a symmetric key when using HS256"
	const d1 = dot1;
	const d2 = dot2;
	const headerPart = token.slice(0, d1);
	let typJwt: boolean;
	if (headerPart === OWN_HEADER) typJwt = true;
	else {
		const header = parseJson(Buffer.from(headerPart, "base64").toString("latin1")) as { alg?: unknown; typ?: unknown } | null | undefined;
		if (!header || header.alg !== JWT_ALGORITHM) return INVALID_TOKEN;
		typJwt = header.typ === "JWT";
	}
	const signature = token.slice(d2 + 1);
	if (signature === "") return INVALID_TOKEN;
	// jwa compares the base64url text, not the bytes: a signature with other padding bits is refused.
	const expected = createHmac("sha256", rawKey(key)).update(token.slice(0, d2)).digest("base64url");
	if (!sameText(expected, signature)) return INVALID_TOKEN;
	const text = Buffer.from(token.slice(d1 + 1, d2), "base64").toString("utf8");
	let payload: unknown;
	if (typJwt) {
		try {
			payload = JSON.parse(text);
		} catch {
			return INVALID_TOKEN;
		}
		if (payload === null || payload === undefined) return INVALID_TOKEN; // jsonwebtoken throws reading `.nbf` of null
	} else {
		const obj = parseJson(text);
		payload = obj !== null && typeof obj === "object" ? obj : text;
	}
	const p = payload as { nbf?: unknown; exp?: unknown };
	if (p.nbf !== undefined && (typeof p.nbf !== "number" || p.nbf > nowSeconds)) return INVALID_TOKEN;
	if (p.exp !== undefined && (typeof p.exp !== "number" || nowSeconds >= p.exp)) return INVALID_TOKEN;
	return payload;
}

const SUBJECT = /^[1-9][0-9]{0,17}$/;

/** The store's claims from a verified payload, or null when it is not one of the store's access tokens. */
export function accessClaims(payload: unknown): VerifiedClaims | null {
	if (payload === null || typeof payload !== "object") return null;
	const { sub, role, iat, exp } = payload as { sub?: unknown; role?: unknown; iat?: unknown; exp?: unknown };
	if (typeof sub !== "string" || !SUBJECT.test(sub) || (role !== "buyer" && role !== "admin")) return null;
	// Without a numeric `iat`, lib/revocations.ts counts the token as revoked by any revocation.
	return { sub, role, iat: typeof iat === "number" ? iat : undefined, exp: typeof exp === "number" ? exp : undefined };
}

/** Verifies an access token: its claims, or null. */
export function verifyAccessToken(secret: string, token: string, nowSeconds?: number): VerifiedClaims | null {
	const payload = verifyHs256(token, secretKey(secret), nowSeconds);
	return payload === INVALID_TOKEN ? null : accessClaims(payload);
}
