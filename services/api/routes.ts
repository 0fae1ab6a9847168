import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context, Service } from "moleculer";
import { Config, configOf } from "../../config";
import { databaseOf } from "../../mixins/db.mixin";
import { ClientAddressOf, clientAddressOf } from "../../lib/client-address";
import type { StoreMeta } from "../../lib/context";
import { invalid, StoreClientError } from "../../lib/errors";
import { hasControl } from "../../lib/validation";
import proxyaddr from "proxy-addr";
import { bearerIs, prometheusText } from "../../lib/metrics-reporter";
import { sendError, sendJson } from "./replies";

type Req = IncomingMessage & { socket: { remoteAddress?: string } };
type Res = ServerResponse;

// No compressed request bodies (inflate: false → 415): no client sends them, and a broken gzip
// body was a 500 (zlib's error carries no HTTP status).
const jsonBody = (config: Config) => ({ json: { strict: true, limit: config.bodyLimit, inflate: false }, urlencoded: false });

/** A request that carries a body, as body-parser counts it. */
const hasBody = (req: Req) => req.headers["transfer-encoding"] !== undefined || !/^0?$/.test(req.headers["content-length"] ?? "");
const JSON_TYPE = /^application\/json\s*(?:;|$)/i;

/**
 * What every route passes on to the actions: the client's address (through TRUSTED_PROXIES only)
 * and the Idempotency-Key. A body that is not JSON is refused (415) rather than ignored: a PATCH
 * sent as text/plain answered 200 and changed nothing. A control character in the Idempotency-Key
 * is refused like one in a field.
 */
function beforeCall(clientAddress: ClientAddressOf) {
	return (ctx: Context<unknown, StoreMeta>, _route: unknown, req: Req) => {
		if (hasBody(req) && !JSON_TYPE.test(req.headers["content-type"] ?? ""))
			throw new StoreClientError("Send the request body as application/json", 415, "UNSUPPORTED_MEDIA_TYPE");
		// body-parser's strict mode lets an array through, which moleculer-web then reads as no
		// fields at all: on a route whose fields are all optional, `[]` acted as `{}`.
		if (Array.isArray((req as Req & { body?: unknown }).body))
			throw invalid("The request body must be a JSON object.", [{ field: "body", type: "object", message: "The request body must be a JSON object." }] as never);
		ctx.meta.clientIp = clientAddress(req);
		const key = req.headers["idempotency-key"];
		if (typeof key === "string") {
			if (hasControl(key)) throw invalid("The 'Idempotency-Key' header must not contain control characters.", [{ field: "Idempotency-Key", type: "stringControl", message: "The 'Idempotency-Key' header must not contain control characters." }] as never);
			ctx.meta.idempotencyKey = key;
		}
	};
}

/** How long one database check answers every health probe: a flood of /api/health costs one query per second, not one each. */
const HEALTH_CHECK_MS = 1000;
const lastCheck = new WeakMap<object, { at: number; ok: Promise<boolean> }>();

function databaseReachable(broker: Service["broker"]): Promise<boolean> {
	const db = databaseOf(broker);
	if (!db) return Promise.resolve(true);
	const now = Date.now();
	const last = lastCheck.get(broker);
	if (last && now - last.at < HEALTH_CHECK_MS) return last.ok;
	const ok = db.then(ds => ds.query("SELECT 1")).then(() => true, () => false);
	lastCheck.set(broker, { at: now, ok });
	return ok;
}

async function health(this: Service, _req: Req, res: Res) {
	let ok = this.broker.started;
	if (ok) ok = await databaseReachable(this.broker);
	if (!ok) return sendJson(res, 503, { name: "ServiceUnavailableError", message: "Not ready", code: 503, type: "NOT_READY" });
	// Serving, with a part that works in a lesser way (a node counting attempts alone while Redis
	// is away): 200, so a load balancer keeps sending claims, and `degraded` says why. A notice
	// not repeated for 15 s (its node went without saying) is forgotten.
	const degraded = [...((this as { degradedNodes?: Map<string, { reason: string; at: number }> }).degradedNodes ?? new Map())]
		.filter(([, d]) => Date.now() - d.at < DEGRADED_NOTICE_MS)
		.map(([node, d]) => ({ node, reason: d.reason }));
	sendJson(res, 200, degraded.length ? { status: "degraded", degraded } : { status: "ok" });
}

const DEGRADED_NOTICE_MS = 15_000;

/**
 * /metrics on the gateway: with METRICS_TOKEN, only that bearer token; without, only a client on
 * loopback that came through no proxy (no X-Forwarded-For): Prometheus on the node's own machine.
 * A buyer's request through the load balancer is refused with the reason.
 */
const isLoopback = proxyaddr.compile("loopback");

function metricsAllowed(config: Config, req: Req): true | StoreClientError {
	if (config.metricsToken) return bearerIs(req, config.metricsToken) ? true : new StoreClientError("Metrics need the METRICS_TOKEN bearer token", 401, "UNAUTHORIZED");
	const local = isLoopback(req.socket.remoteAddress ?? "", 0);
	if (local && req.headers["x-forwarded-for"] === undefined) return true;
	return new StoreClientError("Metrics are served on loopback only (or with METRICS_TOKEN)", 403, "FORBIDDEN");
}

function metrics(this: Service, req: Req, res: Res) {
	const allowed = metricsAllowed(configOf(this.broker), req);
	if (allowed !== true) return void sendError(res, allowed);
	const text = prometheusText(this.broker) ?? "";
	res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
	res.end(text);
}

/**
 * The gateway's routes, built from the typed config when the schema is made. A route's `adminOnly`
 * is checked by the gateway's authorize hook. Function aliases run with `this` = the gateway.
 */
export function apiRoutes(config: Config) {
	const common = { mappingPolicy: "restrict", bodyParsers: jsonBody(config), onBeforeCall: beforeCall(clientAddressOf(config.trustedProxies)) };
	return [
		{
			name: "public",
			path: "/api",
			...common,
			aliases: {
				"GET health": health,
				// timeZone (an addition): where the admin's product form puts its default "next 10:00".
				"GET time": (_req: Req, res: Res) => sendJson(res, 200, { now: new Date().toISOString(), timeZone: config.storeTimeZone }),
				"POST auth/signup": "users.signup",
				"POST auth/login": "users.login",
				"POST auth/password/forgot": "users.forgotPassword",
				"POST auth/password/reset": "users.resetPassword",
				"GET products": "products.list",
				"GET products/:id": "products.get",
				"GET payment-methods": "payments.methods",
			},
		},
		{
			name: "buyer",
			path: "/api",
			...common,
			authentication: true,
			aliases: {
				"GET me": "users.me",
				"GET me/slots": "slots.mine",
				"POST slots/:id/payments": "payments.initiate",
				"POST payments/:id/confirm": "payments.confirm",
				"GET payments/:id": "payments.get",
				"GET me/payments": "payments.mine",
				"POST products/:id/notify-me": "waitlist.join",
				"DELETE products/:id/notify-me": "waitlist.leave",
				"GET products/:id/notify-me": "waitlist.mine",
			},
		},
		{
			name: "admin",
			path: "/api/admin",
			...common,
			authentication: true,
			authorization: true,
			adminOnly: true,
			aliases: {
				"POST products": "products.create",
				"PATCH products/:id": "products.update",
				"DELETE products/:id": "products.remove",
				"GET notifications": "notifier.list",
				"POST notifications/resend-failed": "notifier.resendFailed",
				"POST notifications/:id/resend": "notifier.resend",
				"GET sales": "sales.live",
				"GET sales/:productId": "sales.report",
				"GET waitlist": "waitlist.counts",
			},
		},
		{
			name: "metrics",
			path: "/metrics",
			mappingPolicy: "restrict",
			bodyParsers: false,
			aliases: { "GET /": metrics },
		},
	];
}
