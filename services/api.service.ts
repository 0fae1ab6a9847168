import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type { Config } from "../config";
import { ConfigMixin } from "../mixins/config.mixin";
import { databaseOf } from "../mixins/db.mixin";
import { BearerVerifier, bearerVerifier } from "../lib/auth";
import type { AuthUser, StoreMeta } from "../lib/context";
import { ClaimGate, FlagMessage } from "../lib/claim-gate";
import { forbidden, notFound, rateLimited, unauthorized, unavailable } from "../lib/errors";
import { prometheusText } from "../lib/metrics-reporter";
import { availableNodes } from "../lib/registry";
import { isId } from "../lib/sql";
import { ensureStoreMetrics, METRICS } from "../lib/store-metrics";
import type { WireAnswer } from "./allocator.service";

type Req = IncomingMessage & { $ctx?: Context<unknown, StoreMeta>; $route?: { opts: RouteOpts } };
type Res = ServerResponse;
interface RouteOpts {
	adminOnly?: boolean;
}

/** The one route that must be fast at 10:00:00; it is served before moleculer-web's pipeline. */
const CLAIM_ROUTE = /^\/api\/products\/([^/?#]*)\/slots\/?(?:\?.*)?$/;

type ApiThis = Service & {
	config: Config;
	gate: ClaimGate;
	httpHandler(req: Req, res: Res): void;
	claim(req: Req, res: Res, productId: string): Promise<void>;
	replyError(res: Res, err: ErrorLike): void;
	learnSchedule(): Promise<void>;
	learnFlags(): Promise<void>;
	routes: unknown[];
	aliases: unknown[];
	addRoute(route: object, toBottom: boolean): void;
	verifyBearer: BearerVerifier;
	server: import("node:http").Server;
	sendJson(res: Res, status: number, body: unknown): void;
};

/** body-parser's failures, in the contract's words. */
const BODY_ERRORS: Record<string, [number, string, string]> = {
	"entity.parse.failed": [400, "INVALID_JSON", "The request body is not valid JSON"],
	"entity.too.large": [413, "PAYLOAD_TOO_LARGE", "The request body is too large"],
	"encoding.unsupported": [415, "UNSUPPORTED_ENCODING", "The request body's content encoding is not supported"],
	"charset.unsupported": [415, "UNSUPPORTED_CHARSET", "The request body's charset is not supported"],
	"request.aborted": [400, "REQUEST_ABORTED", "The request was aborted"],
};

interface ErrorLike {
	name?: string;
	message?: string;
	code?: unknown;
	status?: number;
	type?: string;
	data?: unknown;
	stack?: string;
}

/** What an error becomes on the wire: moleculer-web's shape, no stack, no internals, no echoed input. */
export function errorBody(err: ErrorLike): { status: number; body: Record<string, unknown> } {
	const body = err.type ? BODY_ERRORS[err.type] : undefined;
	if (body) {
		const [status, type, message] = body;
		return { status, body: { name: "BadRequestError", message, code: status, type } };
	}
	const status = typeof err.code === "number" && err.code >= 400 && err.code < 600 ? err.code : (err.status ?? 500);
	if (status >= 500 && !(err as { retryable?: boolean }).retryable && status !== 503 && status !== 504) {
		return { status: 500, body: { name: "InternalServerError", message: "Something went wrong on our side", code: 500, type: "INTERNAL_ERROR" } };
	}
	let data = err.data;
	// Validation errors carry the offending value as `actual`: it may be a password.
	if (Array.isArray(data))
		data = data.map(d => {
			if (!d || typeof d !== "object") return d;
			const { actual: _a, nodeID: _n, action: _x, ...rest } = d as Record<string, unknown>;
			return rest;
		});
	return { status, body: { name: err.name, message: err.message, code: status, type: err.type, data } };
}

const SOLD_OUT_LOCAL = { name: "ClaimError", message: "Sold out", code: 409, type: "SOLD_OUT" };

const jsonBody = (config: Config) => ({ json: { strict: true, limit: config.bodyLimit }, urlencoded: false });

const ApiService: ServiceSchema<ServiceSettingSchema, ApiThis> = {
	name: "api",
	mixins: [ApiGateway, ConfigMixin()],

	settings: {
		port: 3000,
		ip: "0.0.0.0",
		logRequest: "debug",
		logResponse: "debug",
		log4XXResponses: false,
		routes: [],
	},

	methods: {
		/** moleculer-web's authentication hook: the verified token's user becomes ctx.meta.user. */
		async authenticate(this: ApiThis, _ctx: Context, _route: unknown, req: Req): Promise<AuthUser> {
			const user = await this.verifyBearer(req);
			if (!user) throw unauthorized();
			return user;
		},

		async authorize(this: ApiThis, ctx: Context<unknown, StoreMeta>, route: { opts: RouteOpts }) {
			if (route.opts.adminOnly && ctx.meta.user?.role !== "admin") throw forbidden();
		},

		/**
		 * POST /api/products/:id/slots. Token first (401), then what this gateway can answer from
		 * memory (429 flood, 409 not open, 409 sold out), and only then one call to the product's actor.
		 */
		async claim(this: ApiThis, req: Req, res: Res, productId: string) {
			const metrics = this.broker.metrics;
			const local = (outcome: string) => metrics.increment(METRICS.claims, { outcome, source: "gateway" });
			let user: AuthUser | null;
			try {
				user = await this.verifyBearer(req);
			} catch {
				user = null;
			}
			if (!user) return this.replyError(res, unauthorized());
			if (!isId(productId)) return this.replyError(res, notFound("Product", "PRODUCT_NOT_FOUND"));
			const now = Date.now();
			const waitMs = this.gate.rateLimit(user.id, now);
			if (waitMs > 0) {
				local("RATE_LIMITED");
				return this.replyError(res, rateLimited(waitMs / 1000, "Too many claims; slow down"));
			}
			const opensAt = this.gate.notOpenUntil(productId, now);
			if (opensAt !== null) {
				local("SALE_NOT_OPEN");
				return this.sendJson(res, 409, { name: "ClaimError", message: "The sale has not opened yet", code: 409, type: "SALE_NOT_OPEN", data: { saleAt: new Date(opensAt).toISOString() } });
			}
			if (this.gate.soldOut(productId, now)) {
				local("SOLD_OUT");
				return this.sendJson(res, 409, SOLD_OUT_LOCAL);
			}
			let a: WireAnswer;
			try {
				a = await this.broker.call("allocator.claim", { productId, userId: user.id });
			} catch (err) {
				// The owner died or timed out and the retries ran out: not a bug, a moment to wait out.
				const e = err as ErrorLike & { retryable?: boolean };
				if (e.retryable) return this.replyError(res, unavailable("The sale is moving to another node; try again", "UNAVAILABLE", 1));
				return this.replyError(res, e);
			}
			switch (a.outcome) {
				case "GRANTED":
					res.setHeader("Location", `/api/me/slots`);
					return this.sendJson(res, 201, { slot: a.slot });
				case "SOLD_OUT":
					return this.sendJson(res, 409, { name: "ClaimError", message: "Sold out", code: 409, type: "SOLD_OUT", data: { epoch: a.epoch, seq: a.seq } });
				case "ALREADY_HOLDING":
					return this.sendJson(res, 409, { name: "ClaimError", message: "You already hold a slot for this product", code: 409, type: "ALREADY_HOLDING", data: { epoch: a.epoch, seq: a.seq, slot: a.slot } });
				case "SALE_NOT_OPEN":
					return this.sendJson(res, 409, { name: "ClaimError", message: "The sale has not opened yet", code: 409, type: "SALE_NOT_OPEN", data: { epoch: a.epoch, seq: a.seq, saleAt: a.saleAt } });
			}
		},

		/** moleculer-web's own error hook, overridden on purpose: one place shapes and logs errors. */
		errorHandler(this: ApiThis, _req: Req, res: Res, err: ErrorLike) {
			this.replyError(res, err);
		},

		replyError(this: ApiThis, res: Res, err: ErrorLike) {
			const { status, body } = errorBody(err);
			if (status >= 500 && body.type === "INTERNAL_ERROR") this.logger.error("Request failed:", err.name, err.message, err.stack);
			const retryAfter = (err.data as { retryAfter?: number } | undefined)?.retryAfter ?? (status === 503 || status === 429 ? 1 : undefined);
			if (retryAfter !== undefined) res.setHeader("Retry-After", String(retryAfter));
			if (res.headersSent) return void res.end();
			this.sendJson(res, status, body);
		},

		/** The sale schedule, for the not-open fast path; kept fresh by products.changed. */
		async learnSchedule(this: ApiThis) {
			if (!(this.broker.registry as unknown as { hasService(name: string): boolean }).hasService("products")) return;
			const rows: { id: string; saleAt: string }[] = await this.broker.call("products.schedule");
			for (const r of rows) this.gate.setSchedule(r.id, Date.parse(r.saleAt));
		},

		/** Sold-out flags held by every allocator node, for a gateway that starts mid-sale. */
		async learnFlags(this: ApiThis) {
			await Promise.all(
				availableNodes(this.broker, "allocator.flags").map(async nodeID => {
					const flags: FlagMessage[] = await this.broker.call("allocator.flags", {}, { nodeID });
					const now = Date.now();
					for (const f of flags) this.gate.applyFlag(f, now);
				})
			);
		},

		sendJson(this: ApiThis, res: Res, status: number, body: unknown) {
			const text = body === null ? "" : JSON.stringify(body);
			res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
			res.end(text);
		},
	},

	created(this: ApiThis) {
		const config = this.config;
		this.verifyBearer = bearerVerifier(config.jwtSecret);
		const self = this;
		const onBeforeCall = (ctx: Context<unknown, StoreMeta>, _route: unknown, req: Req) => {
			ctx.meta.clientIp = req.socket.remoteAddress ?? undefined;
			const key = req.headers["idempotency-key"];
			if (typeof key === "string") ctx.meta.idempotencyKey = key;
		};
		this.settings.port = config.port;
		this.settings.ip = process.env.HOST || "0.0.0.0";
		this.settings.onError = (_req: Req, res: Res, err: ErrorLike) => self.replyError(res, err);
		const routes = [
			{
				name: "public",
				path: "/api",
				mappingPolicy: "restrict",
				bodyParsers: jsonBody(config),
				onBeforeCall,
				aliases: {
					"GET health": async (req: Req, res: Res) => {
						let ok = this.broker.started;
						const db = databaseOf(this.broker);
						if (ok && db) ok = await db.then(ds => ds.query("SELECT 1")).then(() => true, () => false);
						this.sendJson(res, ok ? 200 : 503, ok ? { status: "ok" } : { name: "ServiceUnavailableError", message: "Not ready", code: 503, type: "NOT_READY" });
					},
					"GET time": (_req: Req, res: Res) => this.sendJson(res, 200, { now: new Date().toISOString() }),
					"POST auth/signup": "users.signup",
					"POST auth/login": "users.login",
					"POST auth/password/forgot": "users.forgotPassword",
					"POST auth/password/reset": "users.resetPassword",
					"GET products": "products.list",
					"GET products/:id": "products.get",
				},
			},
			{
				name: "buyer",
				path: "/api",
				mappingPolicy: "restrict",
				authentication: true,
				bodyParsers: jsonBody(config),
				onBeforeCall,
				aliases: {
					"GET me": "users.me",
					"GET me/slots": "slots.mine",
					"POST slots/:id/payments": "payments.initiate",
					"POST payments/:id/confirm": "payments.confirm",
					"GET payments/:id": "payments.get",
					"GET me/payments": "payments.mine",
				},
			},
			{
				name: "admin",
				path: "/api/admin",
				mappingPolicy: "restrict",
				authentication: true,
				authorization: true,
				adminOnly: true,
				bodyParsers: jsonBody(config),
				onBeforeCall,
				aliases: {
					"POST products": "products.create",
					"PATCH products/:id": "products.update",
					"DELETE products/:id": "products.remove",
				},
			},
			{
				name: "metrics",
				path: "/metrics",
				mappingPolicy: "restrict",
				bodyParsers: false,
				aliases: {
					"GET /": (_req: Req, res: Res) => {
						const text = prometheusText(this.broker) ?? "";
						res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
						res.end(text);
					},
				},
			},
		];
		// moleculer-web built its routes in its own `created`, before the config was at hand.
		this.routes = [];
		this.aliases = [];
		for (const route of routes) this.addRoute(route, true);
		// The claim route bypasses moleculer-web's general pipeline (body parsing, alias resolution,
		// hooks): at 10:00:00 most claims are answered right here, from memory.
		this.gate = new ClaimGate(config.claimRatePerSecond);
		ensureStoreMetrics(this.broker);
		const rest = this.httpHandler;
		this.server.removeAllListeners("request");
		this.server.on("request", (req: Req, res: Res) => {
			if (req.method === "POST" && req.url!.startsWith("/api/products/")) {
				const m = CLAIM_ROUTE.exec(req.url!);
				if (m) return void this.claim(req, res, m[1]).catch(err => this.replyError(res, err));
			}
			rest(req, res);
		});
		// moleculer-web's listen() never settles on EADDRINUSE; fail loudly instead of hanging.
		this.server.once("error", (err: NodeJS.ErrnoException) => {
			if (!this.server.listening) this.broker.fatal(`HTTP port ${config.port} is not available: ${err.message}`, err, true);
		});
	},

	events: {
		"allocator.flag"(this: ApiThis, ctx: Context<FlagMessage>) {
			this.gate.applyFlag(ctx.params, Date.now());
		},
		"products.changed"(this: ApiThis, ctx: Context<{ id: string; saleAt?: string; deleted?: boolean }>) {
			const p = ctx.params;
			if (p.deleted) return this.gate.setSchedule(p.id, null);
			if (p.saleAt) this.gate.setSchedule(p.id, Date.parse(p.saleAt));
			this.gate.withdrawSoldOut(p.id);
		},
		"$services.changed"(this: ApiThis) {
			// New products or allocator nodes may have appeared: refresh what the fast path knows.
			this.learnSchedule().catch(() => undefined);
			this.learnFlags().catch(() => undefined);
		},
	},

	started(this: ApiThis) {
		const address = this.server.address() as AddressInfo | null;
		if (address) this.logger.info(`Dopamine Store API on http://127.0.0.1:${address.port}`);
		this.learnSchedule().catch(() => undefined);
		this.learnFlags().catch(() => undefined);
	},
};

export default ApiService;
