import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import type { Config } from "../config";
import { ConfigMixin } from "../mixins/config.mixin";
import { databaseOf } from "../mixins/db.mixin";
import { BearerVerifier, bearerVerifier } from "../lib/auth";
import type { AuthUser, StoreMeta } from "../lib/context";
import { forbidden, unauthorized } from "../lib/errors";
import { prometheusText } from "../lib/metrics-reporter";

type Req = IncomingMessage & { $ctx?: Context<unknown, StoreMeta>; $route?: { opts: RouteOpts } };
type Res = ServerResponse;
interface RouteOpts {
	adminOnly?: boolean;
}

type ApiThis = Service & {
	config: Config;
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
		};
		this.settings.port = config.port;
		this.settings.ip = process.env.HOST || "0.0.0.0";
		this.settings.onError = function (this: ApiThis, req: Req, res: Res, err: ErrorLike) {
			const { status, body } = errorBody(err);
			if (status >= 500 && body.type === "INTERNAL_ERROR") this.logger.error("Request failed:", err.name, err.message, err.stack);
			const retryAfter = (err.data as { retryAfter?: number } | undefined)?.retryAfter ?? (status === 503 || status === 429 ? 1 : undefined);
			if (retryAfter !== undefined) res.setHeader("Retry-After", String(retryAfter));
			if (res.headersSent) return void res.end();
			self.sendJson(res, status, body);
		};
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
		// moleculer-web's listen() never settles on EADDRINUSE; fail loudly instead of hanging.
		this.server.once("error", (err: NodeJS.ErrnoException) => {
			if (!this.server.listening) this.broker.fatal(`HTTP port ${config.port} is not available: ${err.message}`, err, true);
		});
	},

	started(this: ApiThis) {
		const address = this.server.address() as AddressInfo | null;
		if (address) this.logger.info(`Dopamine Store API on http://127.0.0.1:${address.port}`);
	},
};

export default ApiService;
