import { createHash, randomBytes } from "node:crypto";
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Config } from "../config";
import { PasswordResetToken, User } from "../entities";
import { publicUser } from "../entities/User";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import type { Ctx } from "../lib/context";
import { badRequest, conflict, isUniqueViolation, notFound, rateLimited, unauthorized } from "../lib/errors";
import { rowsOf } from "../lib/sql";
import { decoyHash, hashPassword, verifyPassword } from "../lib/passwords";
import { acquireRedis, keyPrefix, releaseRedis } from "../lib/redis";
import { FailureCounter, MemoryFailureCounter, RedisFailureCounter } from "../lib/throttle";
import { signAccessToken } from "../lib/tokens";

const RESET_TOKEN_TTL_MS = 30 * 60 * 1000;
const LOGIN_WINDOW_MS = 60 * 1000;

const loginIdRule = {
	type: "string",
	min: 4,
	max: 32,
	pattern: /^[A-Za-z0-9][A-Za-z0-9_.-]*$/,
	messages: {
		stringPattern: "The 'loginId' field may use letters, digits, '_', '.' and '-', and must start with a letter or digit.",
	},
};
const passwordRule = { type: "string", min: 8, max: 128 };
const emailRule = { type: "email", max: 254, normalize: true };

type UsersThis = WithDb & WithNotify & {
	config: Config;
	failures: FailureCounter;
	usesRedis: boolean;
	ensureAdmin(): Promise<void>;
	checkLoginThrottle(loginId: string, ip: string | undefined): Promise<void>;
	countLoginFailure(loginId: string, ip: string | undefined): Promise<void>;
};

const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

const UsersService: ServiceSchema<ServiceSettingSchema, UsersThis> = {
	name: "users",
	mixins: [ConfigMixin(), DbMixin(), NotifyMixin()],

	actions: {
		signup: {
			params: { $$strict: "remove", loginId: loginIdRule, password: passwordRule, email: emailRule },
			async handler(this: UsersThis, ctx: Ctx<{ loginId: string; password: string; email: string }>) {
				const { loginId, password, email } = ctx.params;
				const passwordHash = await hashPassword(password);
				let user: User;
				try {
					user = await this.db.getRepository(User).save(
						this.db.getRepository(User).create({ loginId, email, passwordHash, role: "buyer" })
					);
				} catch (err) {
					// The unique index on lower(login_id) decides races between simultaneous sign-ups.
					if (isUniqueViolation(err, "users_login_id_ci"))
						throw conflict(`The login id '${loginId}' is already taken`, "LOGIN_ID_TAKEN");
					throw err;
				}
				await this.notify({
					kind: "user.signedUp",
					channel: "email",
					recipient: email,
					subject: "Welcome to Dopamine Store",
					text: `Hello ${loginId}, your account is ready. Sales open every day at 10:00.`,
				});
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = "/api/me";
				return { user: publicUser(user) };
			},
		},

		login: {
			params: { $$strict: "remove", loginId: { type: "string", min: 1, max: 64 }, password: { type: "string", min: 1, max: 128 } },
			async handler(this: UsersThis, ctx: Ctx<{ loginId: string; password: string }>) {
				const { loginId, password } = ctx.params;
				const ip = ctx.meta.clientIp;
				await this.checkLoginThrottle(loginId, ip);
				const user = await this.db
					.getRepository(User)
					.createQueryBuilder("u")
					.addSelect("u.passwordHash")
					.where("lower(u.login_id) = lower(:loginId)", { loginId })
					.getOne();
				// An unknown login id costs the same hash as a wrong password, and answers the same.
				const ok = await verifyPassword(password, user ? user.passwordHash : await decoyHash());
				if (!user || !ok) {
					await this.countLoginFailure(loginId, ip);
					throw unauthorized("Login id or password is wrong", "INVALID_CREDENTIALS");
				}
				await this.failures.clear(`login-fail:id:${loginId.toLowerCase()}`);
				const expiresIn = this.config.jwtExpiresInSeconds;
				return {
					accessToken: signAccessToken(this.config.jwtSecret, { sub: user.id, role: user.role }, expiresIn),
					tokenType: "Bearer",
					expiresIn,
				};
			},
		},

		me: {
			params: {},
			async handler(this: UsersThis, ctx: Ctx) {
				if (!ctx.meta.user) throw unauthorized();
				const user = await this.db.getRepository(User).findOneBy({ id: ctx.meta.user.id });
				if (!user) throw unauthorized("The account behind this token no longer exists");
				return { user: publicUser(user) };
			},
		},

		get: {
			visibility: "public",
			params: { id: { type: "string", numeric: true } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				const user = await this.db.getRepository(User).findOneBy({ id: ctx.params.id });
				if (!user) throw notFound("User", "USER_NOT_FOUND");
				return { user: publicUser(user) };
			},
		},

		forgotPassword: {
			params: { $$strict: "remove", email: emailRule },
			async handler(this: UsersThis, ctx: Ctx<{ email: string }>) {
				ctx.meta.$statusCode = 202;
				const users = await this.db
					.getRepository(User)
					.createQueryBuilder("u")
					.where("lower(u.email) = lower(:email)", { email: ctx.params.email })
					.getMany();
				// Always 202: the answer must not tell whether an account exists.
				for (const user of users) {
					const token = randomBytes(32).toString("base64url");
					await this.db.getRepository(PasswordResetToken).insert({
						userId: user.id,
						tokenHash: hashToken(token),
						expiresAt: new Date(Date.now() + RESET_TOKEN_TTL_MS),
						usedAt: null,
					});
					await this.notify({
						kind: "password.reset",
						channel: "email",
						recipient: user.email,
						subject: "Reset your Dopamine Store password",
						text:
							`Hello ${user.loginId}, someone asked to reset your password.\n` +
							`Open ${this.config.publicUrl}/reset?token=${token} within 30 minutes to choose a new one.\n` +
							`Your reset token: ${token}\nIf it was not you, ignore this message.`,
					});
				}
				return { accepted: true };
			},
		},

		resetPassword: {
			params: { $$strict: "remove", token: { type: "string", min: 1, max: 200 }, password: passwordRule },
			async handler(this: UsersThis, ctx: Ctx<{ token: string; password: string }>) {
				const passwordHash = await hashPassword(ctx.params.password);
				const done = await this.db.transaction(async em => {
					// Consuming the token is one conditional UPDATE, so two resets with one token cannot both win.
					const rows = rowsOf<{ user_id: string }>(
						await em.query(
							`UPDATE password_reset_tokens SET used_at = now()
							 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
							 RETURNING user_id`,
							[hashToken(ctx.params.token)]
						)
					);
					if (rows.length === 0) return false;
					const userId = rows[0].user_id;
					await em.query(`UPDATE users SET password_hash = $1 WHERE id = $2`, [passwordHash, userId]);
					// Other outstanding reset links for this account die with this reset.
					await em.query(`UPDATE password_reset_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL`, [userId]);
					return true;
				});
				if (!done) throw badRequest("This reset token is wrong, used or expired", "INVALID_TOKEN");
				ctx.meta.$statusCode = 204;
				return null;
			},
		},
	},

	methods: {
		async checkLoginThrottle(this: UsersThis, loginId: string, ip: string | undefined) {
			const checks: [string, number][] = [[`login-fail:id:${loginId.toLowerCase()}`, this.config.loginFailuresPerMinutePerLoginId]];
			if (ip) checks.push([`login-fail:ip:${ip}`, this.config.loginFailuresPerMinutePerAddress]);
			for (const [key, limit] of checks) {
				const w = await this.failures.peek(key);
				if (w.count >= limit) throw rateLimited(w.resetInMs / 1000, "Too many failed logins; wait before trying again");
			}
		},

		async countLoginFailure(this: UsersThis, loginId: string, ip: string | undefined) {
			await this.failures.hit(`login-fail:id:${loginId.toLowerCase()}`, LOGIN_WINDOW_MS);
			if (ip) await this.failures.hit(`login-fail:ip:${ip}`, LOGIN_WINDOW_MS);
		},

		/** ADMIN_LOGIN_ID / ADMIN_PASSWORD / ADMIN_EMAIL: that admin exists after start, with that password. */
		async ensureAdmin(this: UsersThis) {
			const admin = this.config.admin;
			if (!admin) return;
			const passwordHash = await hashPassword(admin.password);
			// Upsert on the case-insensitive unique index, so nodes starting together agree.
			await this.db.query(
				`INSERT INTO users (login_id, email, password_hash, role) VALUES ($1, $2, $3, 'admin')
				 ON CONFLICT ((lower(login_id))) DO UPDATE SET role = 'admin', email = EXCLUDED.email, password_hash = EXCLUDED.password_hash`,
				[admin.loginId, admin.email, passwordHash]
			);
			this.logger.info(`Admin '${admin.loginId}' is ready.`);
		},
	},

	created(this: UsersThis) {
		this.usesRedis = !!this.config.redisUrl;
		this.failures = this.config.redisUrl
			? new RedisFailureCounter(acquireRedis(this.broker, this.config.redisUrl), keyPrefix(this.config.namespace))
			: new MemoryFailureCounter();
	},

	async started(this: UsersThis) {
		await this.ensureAdmin();
	},

	async stopped(this: UsersThis) {
		await this.failures.close();
		if (this.usesRedis) await releaseRedis(this.broker);
	},
};

export default UsersService;
