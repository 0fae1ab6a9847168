import { randomBytes, scrypt as scryptCb, timingSafeEqual } from "node:crypto";

/**
 * scrypt from Node's own crypto: a memory-hard slow hash with nothing to install.
 * Stored as `scrypt$N$r$p$salt$hash` so the cost can be raised later without breaking old rows:
 * a login with a hash of another cost is rehashed at today's (`needsRehash`).
 *
 * Cost: OWASP's Password Storage Cheat Sheet asks for N=2^17, r=8, p=1 (128 MiB) or an equivalent;
 * N=2^14, r=8, p=5 is its listed equivalent at 16 MiB per hash, which keeps four hashes at once (the
 * libuv pool) at 64 MiB. (Until issue 22 it was N=2^14, r=8, p=1: a fifth of the work.)
 */
const N = 16384;
const R = 8;
const P = 5;
const KEY_LENGTH = 32;

function scrypt(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
	return new Promise((resolve, reject) =>
		scryptCb(password, salt, KEY_LENGTH, { N: n, r, p, maxmem: 128 * n * r * 2 }, (err, key) =>
			err ? reject(err) : resolve(key)
		)
	);
}

export async function hashPassword(password: string): Promise<string> {
	const salt = randomBytes(16);
	const key = await scrypt(password, salt, N, R, P);
	return `scrypt$${N}$${R}$${P}$${salt.toString("base64")}$${key.toString("base64")}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
	const parts = stored.split("$");
	if (parts.length !== 6 || parts[0] !== "scrypt") return false;
	const [n, r, p] = parts.slice(1, 4).map(Number);
	const expected = Buffer.from(parts[5], "base64");
	const key = await scrypt(password, Buffer.from(parts[4], "base64"), n, r, p);
	return key.length === expected.length && timingSafeEqual(key, expected);
}

/** True when `stored` was made at another cost than today's (or is not ours): rehash it at the next login. */
export function needsRehash(stored: string): boolean {
	const parts = stored.split("$");
	return parts.length !== 6 || parts[0] !== "scrypt" || Number(parts[1]) !== N || Number(parts[2]) !== R || Number(parts[3]) !== P;
}

/** A hash to compare against when the login id does not exist, so both cases cost the same. */
let decoy: Promise<string> | null = null;
export function decoyHash(): Promise<string> {
	decoy ??= hashPassword(randomBytes(12).toString("hex"));
	return decoy;
}
