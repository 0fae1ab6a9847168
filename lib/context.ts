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
	user?: AuthUser;
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
