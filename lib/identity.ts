import { createHmac, timingSafeEqual } from "node:crypto";
import type { Middleware, ServiceBroker } from "moleculer";
import { Config, configOf } from "../config";
import type { SoldOutFlag } from "../contracts";
import type { AuthUser, Ctx } from "./context";
import { forbidden, unauthorized } from "./errors";

/**
 * Trust inside the cluster (issue 22). A node on NATS is not a user: `meta.user` as sent is never
 * believed. The gateway turns a verified bearer token into an identity signed with the nodes'
 * secret (config.nodeSecret, which only nodes hold) and passes it as `meta.identity`; the REPL
 * signs its operator the same way. An action that acts for someone declares it:
 *
 *     setRole: { auth: "admin", params: {...}, handler(ctx) { ctx.meta.user ... } }
 *     mine:    { auth: "user",  params: {},    handler(ctx) { ctx.meta.user.id ... } }
 *
 * and `identityMiddleware` (registered on every broker) checks it before the handler runs: no
 * valid identity 401, a buyer on an admin action 403, and `ctx.meta.user` is replaced by the
 * verified identity. An action without `auth` gets no `meta.user` at all, so one that forgot
 * to declare it fails closed (401 from its own check) instead of believing the wire.
 *
 * An identity lives IDENTITY_TTL_MS: enough for one request and the calls it makes, short enough
 * that one seen on the wire is soon worthless.
 */
export type ActionAuth = "user" | "admin";

export const IDENTITY_TTL_MS = 60_000;
const VERSION = "i1";

function mac(secret: string, label: string, text: string): Buffer {
	return createHmac("sha256", secret).update(label).update("\n").update(text).digest();
}

function sameMac(a: Buffer, b: string): boolean {
	let given: Buffer;
	try {
		given = Buffer.from(b, "base64url");
	} catch {
		return false;
	}
	return given.length === a.length && timingSafeEqual(a, given);
}

/** `i1.<base64url JSON {sub, role, iat?, exp}>.<base64url HMAC>`: what `meta.identity` carries. */
export function signIdentity(secret: string, user: AuthUser, nowMs = Date.now(), ttlMs = IDENTITY_TTL_MS): string {
	const claims: Record<string, unknown> = { sub: String(user.id), role: user.role, exp: nowMs + ttlMs };
	if (user.iat !== undefined) claims.iat = user.iat;
	const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
	return `${VERSION}.${body}.${mac(secret, VERSION, body).toString("base64url")}`;
}

/** The identity a signed `meta.identity` names, or null (unsigned, forged, tampered, expired, malformed). */
export function verifyIdentity(secret: string, identity: unknown, nowMs = Date.now()): AuthUser | null {
	if (typeof identity !== "string" || identity.length > 1024) return null;
	const parts = identity.split(".");
	if (parts.length !== 3 || parts[0] !== VERSION) return null;
	if (!sameMac(mac(secret, VERSION, parts[1]), parts[2])) return null;
	let claims: { sub?: unknown; role?: unknown; exp?: unknown; iat?: unknown };
	try {
		claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
	} catch {
		return null;
	}
	if (!claims || typeof claims.sub !== "string" || (claims.role !== "buyer" && claims.role !== "admin")) return null;
	if (typeof claims.exp !== "number" || nowMs >= claims.exp) return null;
	return typeof claims.iat === "number" ? { id: claims.sub, role: claims.role, iat: claims.iat } : { id: claims.sub, role: claims.role };
}

/** Call options that act as `user`, signed with this broker's node secret (the REPL, tests). */
export function actingAs(broker: ServiceBroker, user: AuthUser): { meta: { identity: string } } {
	return { meta: { identity: signIdentity(configOf(broker).nodeSecret, user) } };
}

/**
 * A node's own calls to an admin action (the notify mixin cancelling a reminder, the dashboard
 * counting failed deliveries): the node holds the secret, so it may sign for itself.
 */
export function asNode(broker: ServiceBroker): { meta: { identity: string } } {
	return actingAs(broker, { id: `node:${broker.nodeID}`, role: "admin" });
}

/**
 * Checks each action's declared `auth` before its handler. One mechanism for every service: a new
 * admin action needs only `auth: "admin"` in its definition.
 */
export function identityMiddleware(config: Config): Middleware {
	return {
		name: "Identity",
		localAction(handler: (ctx: Ctx<unknown>) => unknown, action: { auth?: ActionAuth; name?: string; cache?: unknown }) {
			const need = action.auth;
			if (need !== undefined && need !== "user" && need !== "admin") throw new Error(`Action ${action.name}: auth must be "user" or "admin", got ${String(need)}`);
			// Moleculer's cacher wraps outside this middleware: a cached answer would skip the check.
			if (need !== undefined && (action as { cache?: unknown }).cache) throw new Error(`Action ${action.name}: an action with auth must not be cached (the cache answers before the identity check)`);
			return function checkIdentity(this: unknown, ctx: Ctx<unknown>) {
				const meta = ctx.meta as Ctx<unknown>["meta"] & { identity?: unknown };
				if (need === undefined) {
					// Not an action that acts for someone: whatever `user` the caller sent is not believed here.
					if (meta.user !== undefined) delete meta.user;
					return handler.call(this, ctx);
				}
				const user = verifyIdentity(config.nodeSecret, meta.identity);
				// Rejected, not thrown: a caller's promise chain sees it like any action's refusal.
				if (!user) return Promise.reject(unauthorized());
				if (need === "admin" && user.role !== "admin") return Promise.reject(forbidden());
				meta.user = user;
				return handler.call(this, ctx);
			};
		},
	} as unknown as Middleware;
}

/* The allocator's sold-out flags. A gateway believes one only when the nodes' secret signed it:
 * otherwise any node on NATS could broadcast a huge epoch and lease and stop every sale. */

/** How old a signed flag may be when it arrives (clocks of two nodes differ a little). */
export const FLAG_MAX_AGE_MS = 10_000;

function flagText(f: SoldOutFlag, signedAt: number): string {
	return JSON.stringify([f.productId, f.epoch, f.version, f.soldOut, f.leaseMs, f.saleAt ?? null, signedAt]);
}

export function signFlag(secret: string, flag: SoldOutFlag, nowMs = Date.now()): SoldOutFlag {
	return { ...flag, signedAt: nowMs, sig: mac(secret, "flag", flagText(flag, nowMs)).toString("base64url") };
}

/**
 * True when the flag is signed by a node, recent, and its lease no longer than this gateway's own
 * (`maxLeaseMs`): a replayed old flag is refused, and a lease is never stretched past the setting.
 */
export function verifyFlag(secret: string, flag: SoldOutFlag, maxLeaseMs: number, nowMs = Date.now()): boolean {
	if (!flag || typeof flag !== "object" || typeof flag.sig !== "string" || typeof flag.signedAt !== "number") return false;
	if (typeof flag.productId !== "string" || !Number.isSafeInteger(flag.epoch) || !Number.isSafeInteger(flag.version)) return false;
	if (typeof flag.leaseMs !== "number" || flag.leaseMs < 0 || flag.leaseMs > maxLeaseMs) return false;
	if (Math.abs(nowMs - flag.signedAt) > FLAG_MAX_AGE_MS) return false;
	return sameMac(mac(secret, "flag", flagText(flag, flag.signedAt)), flag.sig);
}
