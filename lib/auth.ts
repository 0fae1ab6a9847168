import type { IncomingMessage } from "node:http";
import { ExtractJwt, Strategy as JwtStrategy } from "passport-jwt";
import type { AuthUser } from "./context";
import { JWT_ALGORITHM, secretKey } from "./tokens";

/**
 * Bearer-token verification through passport-jwt, without express: one strategy per secret,
 * driven per request the way passport itself drives it (success / fail / error callbacks).
 * HS256 only, so `alg: none` and algorithm-confusion tokens fail.
 */
export type BearerVerifier = (req: IncomingMessage) => Promise<AuthUser | null>;

export function bearerVerifier(secret: string): BearerVerifier {
	const strategy = new JwtStrategy(
		{
			jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
			secretOrKey: secretKey(secret) as unknown as string,
			algorithms: [JWT_ALGORITHM],
		},
		(payload: { sub?: unknown; role?: unknown }, done: (err: unknown, user?: AuthUser | false) => void) => {
			const { sub, role } = payload;
			if (typeof sub !== "string" || !/^[1-9][0-9]{0,17}$/.test(sub) || (role !== "buyer" && role !== "admin"))
				return done(null, false);
			done(null, { id: sub, role });
		}
	);

	return req =>
		new Promise((resolve, reject) => {
			const attempt = Object.create(strategy);
			attempt.success = (user: AuthUser) => resolve(user);
			attempt.fail = () => resolve(null);
			attempt.error = (err: unknown) => reject(err);
			attempt.authenticate(req, {});
		});
}
