import type { Context } from "moleculer";
import type { Role } from "../entities/User";

/** Who is calling, as the gateway verified it from the bearer token. */
export interface AuthUser {
	id: string;
	role: Role;
	/** The token's `iat` (unix seconds), for revocation (lib/revocations.ts). */
	iat?: number;
}

export interface StoreMeta {
	/**
	 * Who is calling, as verified from `identity` by lib/identity.ts's middleware: set only inside
	 * an action that declares `auth`; never believed as sent.
	 */
	user?: AuthUser;
	/** The caller's identity, signed with the nodes' secret by the gateway or the REPL (lib/identity.ts). */
	identity?: string;
	/** The HTTP client's address, for per-address limits. */
	clientIp?: string;
	/** The Idempotency-Key header, for payments. */
	idempotencyKey?: string;
	$statusCode?: number;
	$location?: string;
	$responseHeaders?: Record<string, string>;
	$responseType?: string;
}

export type Ctx<P = Record<string, never>> = Context<P, StoreMeta>;
