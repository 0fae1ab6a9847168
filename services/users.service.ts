import { createHash, randomBytes } from "node:crypto";
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Config } from "../config";
import { PasswordResetToken, User } from "../entities";
import { publicUser } from "../entities/User";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import { NotifyMixin, WithNotify } from "../mixins/notify.mixin";
import { buyerMessages } from "../lib/messages";
import type { Ctx } from "../lib/context";
import { badRequest, conflict, isUniqueViolation, notFound, rateLimited, unauthorized } from "../lib/errors";
import { isId, rowsOf } from "../lib/sql";
import { decoyHash, hashPassword, needsRehash, verifyPassword } from "../lib/passwords";
import { acquireRedis, keyPrefix, releaseRedis } from "../lib/redis";
import { FailureCounter, FallbackFailureCounter, MemoryFailureCounter } from "../lib/throttle";
import { signAccessToken } from "../lib/tokens";
import { emailRule } from "../lib/validation";
import { seal } from "../lib/sealed";
import { COUNTERS_DEGRADED, CountersDegraded, TOKENS_REVOKED, TokensRevoked } from "../contracts";
import * as users from "../store/users";
import * as resetTokens from "../store/password-reset-tokens";

const RESET_TOKEN_TTL_MS = 30 * 60 * 1000;
const LOGIN_WINDOW_MS = 60 * 1000;
/** Past the strict per-(id, address) limit, each further failed login for that id waits longer: 50 ms, 100 ms, ... up to 2 s. */
const LOGIN_DELAY_BASE_MS = 50;
const LOGIN_DELAY_MAX_MS = 2000;
const HOUR_MS = 60 * 60 * 1000;
/** Expired reset tokens deleted per statement (each forgot-password prunes one batch). */
const PRUNE_BATCH = 500;

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

type Limit = [key: string, limit: number];

type UsersThis = WithDb & WithNotify & {
	config: Config;
	/** Attempt counters: logins, sign-ups, forgot-password and reset requests. */
	attempts: FailureCounter;
	usesRedis: boolean;
	/** Work that runs after the answer (forgot-password), awaited when the service stops. */
	afterAnswer: Set<Promise<void>>;
	/** The last sign-up queued for each login id (lower case) on this node. */
	signingUp: Map<string, Promise<unknown>>;
	/** Repeats the degraded notice while Redis is away. */
	countersTimer: NodeJS.Timeout | null;
	tellCounters(): void;
	ensureAdmin(): Promise<void>;
	createAdmin(loginId: string, email: string, password: string, onlyIfNone: boolean): Promise<boolean>;
	/** Counts one attempt against each limit (429 past any); the counts, in the order given. */
	countAttempt(limits: (Limit | null)[], windowMs: number, message: string): Promise<number[]>;
	later(work: () => Promise<void>): void;
	oneSignUpPerId<T>(loginId: string, work: () => Promise<T>): Promise<T>;
	upgradeHash(userId: string, oldHash: string, password: string): Promise<void>;
	sendResetLinks(email: string): Promise<void>;
	announceRevocation(userId: string, notBefore: number): void;
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
				const ip = ctx.meta.clientIp;
				const limits = this.config.signupsPerHour;
				// Counted before any work: sign-ups send mail and cost a hash.
				await this.countAttempt(
					[[`signup:email:${email.toLowerCase()}`, limits.perEmail], ip ? [`signup:ip:${ip}`, limits.perAddress] : null],
					HOUR_MS,
					"Too many sign-ups; wait before trying again"
				);
				const user = await this.oneSignUpPerId(loginId, async () => {
					// A taken id answers before the hash (the unique index below still decides races).
					if ((await this.db.query(users.loginIdTakenSql, [loginId])).length)
						throw conflict(`The login id '${loginId}' is already taken`, "LOGIN_ID_TAKEN");
					const passwordHash = await hashPassword(password);
					try {
						return await this.db.getRepository(User).save(
							this.db.getRepository(User).create({ loginId, email, passwordHash, role: "buyer" })
						);
					} catch (err) {
						// The unique index on lower(login_id) decides races between nodes.
						if (isUniqueViolation(err, "users_login_id_ci"))
							throw conflict(`The login id '${loginId}' is already taken`, "LOGIN_ID_TAKEN");
						throw err;
					}
				});
				await this.notify({
					...buyerMessages.signedUp(this.config.locale, { loginId, storeUrl: this.config.publicUrl }),
					channel: "email",
					recipient: email,
					dedupeKey: `signup-${user.id}`,
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
				const id = loginId.toLowerCase();
				const pairKey = `login-fail:pair:${id}:${ip ?? "-"}`;
				const idKey = `login-fail:id:${id}`;
				const ipKey = ip ? `login-fail:ip:${ip}` : null;
				// Counted before the password check, atomically: of fifty wrong logins sent at once, at
				// most the limit get as far as the hash; the rest answer 429. The strict limit is per login
				// id from one address: a guesser locks out only itself, not the account (issue 22, point 6).
				await this.countAttempt(
					[[pairKey, this.config.loginFailuresPerMinutePerLoginId], ipKey ? [ipKey, this.config.loginFailuresPerMinutePerAddress] : null],
					LOGIN_WINDOW_MS,
					"Too many failed logins; wait before trying again"
				);
				// What passed both: the id's count from every address, under a much higher ceiling, and a
				// delay that grows with it once it passes the strict limit (guessing from many addresses
				// slows down; the owner's right password still gets in, a moment later).
				const [idCount] = await this.countAttempt([[idKey, this.config.loginFailuresPerMinutePerIdCeiling]], LOGIN_WINDOW_MS, "Too many failed logins; wait before trying again");
				const over = idCount - this.config.loginFailuresPerMinutePerLoginId;
				if (over > 0) await new Promise(r => setTimeout(r, Math.min(LOGIN_DELAY_MAX_MS, LOGIN_DELAY_BASE_MS * 2 ** Math.min(over - 1, 10))));
				const [user] = (await this.db.query(users.userForLoginSql, [loginId])) as {
					id: string; role: "buyer" | "admin"; password_hash: string; not_before: string | null; now: string;
				}[];
				// An unknown login id costs the same hash as a wrong password, and answers the same.
				const ok = await verifyPassword(password, user ? user.password_hash : await decoyHash());
				if (!user || !ok) throw unauthorized("Login id or password is wrong", "INVALID_CREDENTIALS");
				// A hash from before today's cost is upgraded now that the password is known, after the
				// answer; only if it is still the same hash (a reset meanwhile wins).
				if (needsRehash(user.password_hash)) this.later(() => this.upgradeHash(user.id, user.password_hash, password));
				// A success was no failure: the login id starts afresh, the address gets its attempt back.
				await Promise.all([this.attempts.clear(pairKey), this.attempts.undo(idKey), ipKey ? this.attempts.undo(ipKey) : undefined]);
				const expiresIn = this.config.jwtExpiresInSeconds;
				// iat on the database's clock, and never before the user's "tokens not before": a login in
				// the same second as a reset, just after it, gets a token the reset does not revoke.
				const issuedAt = Math.max(Number(user.now), user.not_before === null ? 0 : Number(user.not_before));
				return {
					accessToken: signAccessToken(this.config.jwtSecret, { sub: String(user.id), role: user.role }, expiresIn, issuedAt),
					tokenType: "Bearer",
					expiresIn,
				};
			},
		},

		me: {
			auth: "user",
			params: {},
			async handler(this: UsersThis, ctx: Ctx) {
				const user = await this.db.getRepository(User).findOneBy({ id: ctx.meta.user!.id });
				if (!user) throw unauthorized("The account behind this token no longer exists");
				return { user: publicUser(user) };
			},
		},

		/** A user's public view (e-mail included): admins and nodes only. */
		get: {
			visibility: "public",
			auth: "admin",
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
				const { email } = ctx.params;
				const ip = ctx.meta.clientIp;
				const limits = this.config.passwordForgotPerHour;
				// Counted whether an account has this address or not, so a 429 tells nothing either.
				await this.countAttempt(
					[[`forgot:email:${email.toLowerCase()}`, limits.perEmail], ip ? [`forgot:ip:${ip}`, limits.perAddress] : null],
					HOUR_MS,
					"Too many password reset requests; wait before trying again"
				);
				// Always 202, by the same path in the same time: the look-up, the token and the message
				// happen after the answer, so neither the answer nor its timing tells whether an account exists.
				this.later(() => this.sendResetLinks(email));
				ctx.meta.$statusCode = 202;
				return { accepted: true };
			},
		},

		resetPassword: {
			params: { $$strict: "remove", token: { type: "string", min: 1, max: 200 }, password: passwordRule },
			async handler(this: UsersThis, ctx: Ctx<{ token: string; password: string }>) {
				const ip = ctx.meta.clientIp;
				await this.countAttempt(
					[ip ? [`reset:ip:${ip}`, this.config.passwordResetsPerHourPerAddress] : null],
					HOUR_MS,
					"Too many password resets; wait before trying again"
				);
				const tokenHash = hashToken(ctx.params.token);
				// A wrong token costs no hash (the conditional UPDATE below still decides).
				const live = await this.db.query(resetTokens.liveResetTokenSql, [tokenHash]);
				if (live.length === 0) throw badRequest("This reset token is wrong, used or expired", "INVALID_TOKEN");
				const passwordHash = await hashPassword(ctx.params.password);
				const done = await this.db.transaction(async em => {
					// Consuming the token is one conditional UPDATE, so two resets with one token cannot both win.
					const rows = rowsOf<{ user_id: string }>(
						await em.query(resetTokens.useResetTokenSql, [tokenHash])
					);
					if (rows.length === 0) return null;
					const userId = String(rows[0].user_id);
					await em.query(users.setPasswordHashSql, [passwordHash, userId]);
					// Tokens issued before the new password stop working.
					const [revoked] = rowsOf<{ not_before: string }>(await em.query(users.revokeTokensSql, [userId]));
					// Other outstanding reset links for this account die with this reset.
					await em.query(resetTokens.retireResetTokensSql, [userId]);
					return { userId, notBefore: Number(revoked.not_before) };
				});
				if (!done) throw badRequest("This reset token is wrong, used or expired", "INVALID_TOKEN");
				this.announceRevocation(done.userId, done.notBefore);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},

		/** Operators (REPL: `call users.setRole --id 12 --role admin`): a role change revokes the user's tokens. */
		setRole: {
			visibility: "public",
			auth: "admin",
			params: { id: { type: "string", numeric: true, max: 20 }, role: { type: "enum", values: ["buyer", "admin"] } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string; role: "buyer" | "admin" }>) {
				if (!isId(ctx.params.id)) throw notFound("User", "USER_NOT_FOUND");
				// The trigger users_role_revokes_tokens sets tokens_not_before when the role really changes.
				const [row] = rowsOf<{ id: string; login_id: string; email: string; role: "buyer" | "admin"; not_before: string | null }>(
					await this.db.query(users.setRoleSql, [ctx.params.id, ctx.params.role])
				);
				if (!row) throw notFound("User", "USER_NOT_FOUND");
				if (row.not_before !== null) this.announceRevocation(String(row.id), Number(row.not_before));
				return { user: publicUser({ id: row.id, loginId: row.login_id, email: row.email, role: row.role }) };
			},
		},

		/** The gateways' authoritative check for every route but the claim route: one primary-key read. */
		notBefore: {
			visibility: "public",
			params: { id: { type: "string", max: 20 } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>): Promise<{ notBefore: number | null }> {
				if (!isId(ctx.params.id)) return { notBefore: null };
				const [row] = (await this.db.query(users.notBeforeSql, [ctx.params.id])) as { not_before: string | null }[];
				return { notBefore: row?.not_before == null ? null : Number(row.not_before) };
			},
		},

		/**
		 * Every revocation that can still matter (tokens live `JWT_EXPIRES_IN_SECONDS`): what a gateway
		 * loads at start and re-reads every few seconds, in case it missed a broadcast.
		 */
		revocations: {
			visibility: "public",
			params: {},
			async handler(this: UsersThis): Promise<TokensRevoked[]> {
				const rows = (await this.db.query(users.recentRevocationsSql, [this.config.jwtExpiresInSeconds + 60])) as { id: string; not_before: string }[];
				return rows.map(r => ({ userId: String(r.id), notBefore: Number(r.not_before) }));
			},
		},
	},

	methods: {
		/** Tells the gateways whether this node's attempt counters are its own (Redis away) or shared. */
		tellCounters(this: UsersThis) {
			const degraded = (this.attempts as FallbackFailureCounter).degraded === true;
			const payload: CountersDegraded = { nodeID: this.broker.nodeID, degraded, reason: degraded ? "Redis unreachable: attempt limits per node" : "" };
			this.broker.broadcast(COUNTERS_DEGRADED, payload).catch(() => undefined);
			if (degraded && !this.countersTimer) {
				this.countersTimer = setInterval(() => this.tellCounters(), 5_000);
				this.countersTimer.unref();
			} else if (!degraded && this.countersTimer) {
				clearInterval(this.countersTimer);
				this.countersTimer = null;
			}
		},

		/**
		 * Counts one attempt against each limit before the work it guards, and answers 429 (with
		 * Retry-After) when any count is over its limit. Counting first, atomically, is what makes the
		 * limit hold against attempts sent at the same instant.
		 */
		async countAttempt(this: UsersThis, limits: (Limit | null)[], windowMs: number, message: string) {
			const given = limits.filter((l): l is Limit => l !== null);
			const states = await Promise.all(given.map(([key]) => this.attempts.hit(key, windowMs)));
			const waits = states.filter((w, i) => w.count > given[i][1]).map(w => w.resetInMs);
			if (waits.length) throw rateLimited(Math.max(...waits) / 1000, message);
			return states.map(w => w.count);
		},

		async upgradeHash(this: UsersThis, userId: string, oldHash: string, password: string) {
			const fresh = await hashPassword(password);
			await this.db.query(users.upgradeHashSql, [fresh, userId, oldHash]);
		},

		later(this: UsersThis, work: () => Promise<void>) {
			const running: Promise<void> = work()
				.catch(err => this.logger.warn("Work after the answer failed:", (err as Error).message))
				.finally(() => this.afterAnswer.delete(running));
			this.afterAnswer.add(running);
		},

		/**
		 * Runs a sign-up after any other for the same login id on this node. A burst of one id (a double
		 * click, a page's retry, twenty tabs) then costs one hash: the rest find the id taken before
		 * hashing. Between nodes, the unique index decides.
		 */
		async oneSignUpPerId<T>(this: UsersThis, loginId: string, work: () => Promise<T>): Promise<T> {
			const key = loginId.toLowerCase();
			const ahead = this.signingUp.get(key);
			const mine = ahead ? ahead.catch(() => undefined).then(work) : work();
			this.signingUp.set(key, mine);
			try {
				return await mine;
			} finally {
				if (this.signingUp.get(key) === mine) this.signingUp.delete(key);
			}
		},

		/** Forgot-password's work, after the answer: a token and a message per account with this address. */
		async sendResetLinks(this: UsersThis, email: string) {
			// Each request prunes one batch of expired tokens, so the table stays as small as the traffic.
			await this.db.query(resetTokens.pruneResetTokensSql, [PRUNE_BATCH]);
			const accounts = await this.db
				.getRepository(User)
				.createQueryBuilder("u")
				.where("lower(u.email) = lower(:email)", { email })
				.getMany();
			for (const user of accounts) {
				const token = randomBytes(32).toString("base64url");
				await this.db.getRepository(PasswordResetToken).insert({
					userId: user.id,
					tokenHash: hashToken(token),
					expiresAt: new Date(Date.now() + RESET_TOKEN_TTL_MS),
					usedAt: null,
				});
				await this.notify({
					...buyerMessages.passwordReset(this.config.locale, {
						loginId: user.loginId,
						// Sealed for the notifier alone: the stream and the delivery log never hold a usable link (lib/sealed.ts).
						link: seal(this.config.nodeSecret, `${this.config.publicUrl}/reset?token=${token}`),
						validMinutes: Math.round(RESET_TOKEN_TTL_MS / 60_000),
					}),
					channel: "email",
					recipient: user.email,
				});
			}
		},

		/** Every gateway learns at once; one that misses it re-reads `users.revocations` within seconds. */
		announceRevocation(this: UsersThis, userId: string, notBefore: number) {
			const payload: TokensRevoked = { userId, notBefore };
			// (broadcast returns nothing when no node listens.)
			Promise.resolve(this.broker.broadcast(TOKENS_REVOKED, payload)).catch(err => this.logger.warn("Revocation broadcast failed:", (err as Error).message));
		},

		/**
		 * The admin bootstrap. Creates an admin when missing and never touches an existing account:
		 * a password changed by a reset stays changed, whatever ADMIN_PASSWORD says at the next start.
		 * - ADMIN_LOGIN_ID / ADMIN_PASSWORD / ADMIN_EMAIL set: that account is created if its login id is free.
		 * - nothing set, single process (`npm start`): when no admin exists at all, a local one named
		 *   `admin` with a generated password, printed once here; nothing else ever shows it.
		 */
		async ensureAdmin(this: UsersThis) {
			const given = this.config.admin;
			if (given) {
				const created = await this.createAdmin(given.loginId, given.email, given.password, false);
				if (created) this.logger.info(`Admin '${given.loginId}' created from ADMIN_LOGIN_ID.`);
				else {
					const [row] = (await this.db.query(users.roleOfLoginIdSql, [given.loginId])) as { role: string }[];
					// A buyer who took the login id first is not made an admin by the bootstrap.
					if (row?.role !== "admin") this.logger.error(`ADMIN_LOGIN_ID '${given.loginId}' belongs to a buyer's account; no admin was created.`);
					else this.logger.info(`Admin '${given.loginId}' exists; its password is left as it is (ADMIN_PASSWORD only sets the first one).`);
				}
				return;
			}
			if (this.config.transporter) return;
			// The usual case, an admin exists: no password to generate (the insert below still decides races).
			if ((await this.db.query(users.anyAdminSql)).length > 0) return;
			const password = randomBytes(15).toString("base64url");
			const email = "admin@dopamine.local";
			// `admin` may be a buyer's login id already: then the local admin gets a suffix.
			if (!(await this.createAdmin("admin", email, password, true))) await this.createAdmin(`admin-${randomBytes(3).toString("hex")}`, email, password, true);
		},

		/**
		 * Inserts an admin if the login id is free (and, with `onlyIfNone`, no admin exists at all).
		 * One statement, so two nodes starting together create one account. True when created.
		 */
		async createAdmin(this: UsersThis, loginId: string, email: string, password: string, onlyIfNone: boolean) {
			const passwordHash = await hashPassword(password);
			const rows = rowsOf<{ login_id: string }>(
				await this.db.query(users.insertAdminSql, [loginId, email, passwordHash, onlyIfNone])
			);
			if (rows.length === 0) return false;
			if (onlyIfNone)
				// Printed once, on purpose: this is how the person who ran `npm start` gets in.
				this.logger.info(
					`No admin existed, so one was created for this store. Login id: ${loginId}  Password: ${password}  ` +
						`(shown only now; sign in at /admin. Set ADMIN_LOGIN_ID, ADMIN_PASSWORD and ADMIN_EMAIL to choose your own.)`
				);
			return true;
		},
	},

	created(this: UsersThis) {
		this.usesRedis = !!this.config.redisUrl;
		this.afterAnswer = new Set();
		this.signingUp = new Map();
		this.attempts = this.config.redisUrl
			? new FallbackFailureCounter(acquireRedis(this.broker, this.config.redisUrl), keyPrefix(this.config.namespace), (degraded, reason) => {
					if (degraded) this.logger.warn(`Attempt limits now count on this node alone (${reason}): logins and sign-ups go on, each node with its own limits.`);
					else this.logger.info(`Attempt limits shared through Redis again (${reason}).`);
					this.tellCounters();
				})
			: new MemoryFailureCounter();
		this.countersTimer = null;
	},

	async started(this: UsersThis) {
		await this.ensureAdmin();
	},

	async stopped(this: UsersThis) {
		if (this.countersTimer) clearInterval(this.countersTimer);
		await Promise.allSettled([...this.afterAnswer]);
		await this.attempts.close();
		if (this.usesRedis) await releaseRedis(this.broker);
	},
};

export default UsersService;
