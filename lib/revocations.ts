import type { TokensRevoked } from "../contracts";
import type { AuthUser } from "./context";

/**
 * What a gateway knows of revoked access tokens: per user, the whole second before which tokens
 * were issued that no longer work (a password reset, a role change). Kept in memory from the
 * users service's broadcasts and a periodic re-read, so the claim route checks it with one map
 * lookup and no database read. A token is revoked when its `iat` is before that second.
 */
export class TokenRevocations {
	private readonly notBefore = new Map<string, number>();

	/** Keeps the latest time per user: broadcasts and re-reads may arrive in any order. */
	apply(r: TokensRevoked): void {
		const known = this.notBefore.get(r.userId);
		if (known === undefined || r.notBefore > known) this.notBefore.set(r.userId, r.notBefore);
	}

	/** True when `user`'s token was issued before the user's tokens were revoked (no `iat`: revoked if anything is). */
	revoked(user: AuthUser): boolean {
		const nb = this.notBefore.get(user.id);
		return nb !== undefined && !(typeof user.iat === "number" && user.iat >= nb);
	}

	/** Forgets revocations older than a token's lifetime: every token they could refuse has expired. */
	prune(nowSeconds: number, tokenLifetimeSeconds: number): void {
		for (const [id, nb] of this.notBefore) if (nb + tokenLifetimeSeconds < nowSeconds) this.notBefore.delete(id);
	}

	get size(): number {
		return this.notBefore.size;
	}
}
