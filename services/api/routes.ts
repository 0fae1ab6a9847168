import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context, Service } from "moleculer";
import type { Config } from "../../config";
import { databaseOf } from "../../mixins/db.mixin";
import { ClientAddressOf, clientAddressOf } from "../../lib/client-address";
import type { StoreMeta } from "../../lib/context";
import { invalid, StoreClientError } from "../../lib/errors";
import { hasControl } from "../../lib/validation";
import { prometheusText } from "../../lib/metrics-reporter";
import { sendJson } from "./replies";

/**
 * The gateway's routes, built from the typed config when the schema is made. A route's `adminOnly`
 * is checked by the gateway's authorize hook. Function aliases run with `this` = the gateway.
 */
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
		ctx.meta.clientIp = clientAddress(req);
		const key = req.headers["idempotency-key"];
		if (typeof key === "string") {
			if (hasControl(key)) throw invalid("The 'Idempotency-Key' header must not contain control characters.", [{ field: "Idempotency-Key", type: "stringControl", message: "The 'Idempotency-Key' header must not contain control characters." }] as never);
			ctx.meta.idempotencyKey = key;
		}
	};
}

async function health(this: Service, _req: Req, res: Res) {
	let ok = this.broker.started;
	const db = databaseOf(this.broker);
	if (ok && db) ok = await db.then(ds => ds.query("SELECT 1")).then(() => true, () => false);
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

function metrics(this: Service, _req: Req, res: Res) {
	const text = prometheusText(this.broker) ?? "";
	res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
	res.end(text);
}

export function apiRoutes(config: Config) {
	const common = { mappingPolicy: "restrict", bodyParsers: jsonBody(config), onBeforeCall: beforeCall(clientAddressOf(config.trustedProxies)) };
	return [
		{
			name: "public",
			path: "/api",
			...common,
			aliases: {
				"GET health": health,
				"GET time": (_req: Req, res: Res) => sendJson(res, 200, { now: new Date().toISOString() }),
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
			...common,
			authentication: true,
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
			...common,
			authentication: true,
			authorization: true,
			adminOnly: true,
			aliases: {
				"POST products": "products.create",
				"PATCH products/:id": "products.update",
				"DELETE products/:id": "products.remove",
				"GET notifications": "notifier.list",
				"POST notifications/:id/resend": "notifier.resend",
				"GET sales": "sales.live",
				"GET sales/:productId": "sales.report",
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
