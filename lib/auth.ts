import type { IncomingMessage } from "node:http";
import { ExtractJwt, Strategy as JwtStrategy } from "passport-jwt";
import type { AuthUser } from "./context";
import { accessClaims, INVALID_TOKEN, isOwnKey, JWT_ALGORITHM, secretKey, verifyHs256 } from "./tokens";

/**
 * Bearer-token verification through passport-jwt, without express: one strategy per secret,
 * driven per request the way passport itself drives it (success / fail / error callbacks).
 * HS256 only, so `alg: none` and algorithm-confusion tokens fail.
 *
 * passport-jwt verifies through `JwtStrategy.JwtVerifier` (jsonwebtoken by default), which it
 * documents as replaceable. The store's own strategies (a key made by lib/tokens.ts, HS256 only,
 * no audience or issuer) get `verifyHs256`: the same decisions at a few µs instead of ~50.
 * Every other use of passport-jwt in the process keeps jsonwebtoken.
 */
/** The verified user, with the token's `iat` when it has one (for the revocation check, lib/revocations.ts, which stays outside the verifier). */
export type VerifiedUser = AuthUser;

/**
 * Called as a function: the verified user, or null (moleculer-web's authenticate hook). `now`
 * gives the same answer without a promise: the strategy settles synchronously with these
 * verifiers, and the claim route answers most claims without ever leaving the request handler.
 */
export interface BearerVerifier {
	(req: IncomingMessage): Promise<VerifiedUser | null>;
	now(req: IncomingMessage): VerifiedUser | null;
}

type JwtVerifierFn = (token: string, key: unknown, options: Record<string, unknown>, done: (err: Error | null, payload?: unknown) => void) => void;
type WithVerifier = typeof JwtStrategy & { JwtVerifier: JwtVerifierFn };

const strategyClass = JwtStrategy as WithVerifier;
const jsonwebtokenVerifier = strategyClass.JwtVerifier;
const tokenRefused = new Error("invalid token");

function storeVerifier(token: string, key: unknown, options: Record<string, unknown>, done: (err: Error | null, payload?: unknown) => void): void {
	const algorithms = options.algorithms as string[] | undefined;
	const ours =
		isOwnKey(key) &&
		algorithms?.length === 1 &&
		algorithms[0] === JWT_ALGORITHM &&
		!options.audience &&
		!options.issuer &&
		!options.ignoreExpiration &&
		Object.keys(options).every(k => k === "algorithms" || k === "audience" || k === "issuer" || k === "ignoreExpiration");
	if (!ours) return jsonwebtokenVerifier(token, key, options, done);
	const payload = verifyHs256(token, key);
	if (payload === INVALID_TOKEN) return done(tokenRefused);
	done(null, payload);
}

export function bearerVerifier(secret: string): BearerVerifier {
	strategyClass.JwtVerifier = storeVerifier;
	const strategy = new JwtStrategy(
		{
			jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
			secretOrKey: secretKey(secret) as unknown as string,
			algorithms: [JWT_ALGORITHM],
		},
		(payload: unknown, done: (err: unknown, user?: VerifiedUser | false) => void) => {
			const claims = accessClaims(payload);
			if (!claims) return done(null, false);
			done(null, claims.iat === undefined ? { id: claims.sub, role: claims.role } : { id: claims.sub, role: claims.role, iat: claims.iat });
		}
	);

	const verify = ((req: IncomingMessage) =>
		new Promise((resolve, reject) => {
			const attempt = Object.create(strategy);
			attempt.success = (user: VerifiedUser) => resolve(user);
			attempt.fail = () => resolve(null);
			attempt.error = (err: unknown) => reject(err);
			attempt.authenticate(req, {});
		})) as BearerVerifier;

	// One attempt object, reused: authenticate() runs to completion before `now` returns.
	let settled: VerifiedUser | null | undefined;
	const attempt = Object.create(strategy);
	attempt.success = (user: VerifiedUser) => (settled = user);
	attempt.fail = () => (settled = null);
	attempt.error = () => (settled = null);
	verify.now = req => {
		settled = undefined;
		attempt.authenticate(req, {});
		if (settled === undefined) throw new Error("passport-jwt did not settle synchronously");
		return settled;
	};
	return verify;
}
