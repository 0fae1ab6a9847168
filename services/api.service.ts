import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import { Config, mailboxOnly } from "../config";
import { COUNTERS_DEGRADED, CountersDegraded, PRODUCT_CHANGED, ProductChanged, SOLD_OUT_FLAG, SoldOutFlag, TOKENS_REVOKED, TokensRevoked } from "../contracts";
import { BearerVerifier, bearerVerifier } from "../lib/auth";
import type { AuthUser, StoreMeta } from "../lib/context";
import { forbidden, StoreClientError, unauthorized, unavailable } from "../lib/errors";
import { signIdentity, verifyFlag } from "../lib/identity";
import { availableNodes } from "../lib/registry";
import { TokenRevocations } from "../lib/revocations";
import { ensureStoreMetrics } from "../lib/store-metrics";
import { ClaimGate } from "./api/claim-gate";
import { ClaimRoute, claimTarget } from "./api/claim-route";
import { loadPages, Pages, shopAddresses } from "./api/pages";
import { ErrorLike, errorBody, sendError } from "./api/replies";
import { apiRoutes } from "./api/routes";

/** Connections waiting to be accepted (see started()). */
const ACCEPT_BACKLOG = 4096;

type Req = http.IncomingMessage;
type Res = http.ServerResponse;

/** The request line and headers of one request, at most (431 beyond). */
const MAX_HEADER_BYTES = 16 * 1024;
/** The largest body a claim may announce (it needs none). */
const CLAIM_BODY_MAX = 1024;

function claimBodyTooLarge(req: Req): boolean {
	if (req.headers["transfer-encoding"] !== undefined) return true;
	const length = req.headers["content-length"];
	return length !== undefined && !(/^\d{1,4}$/.test(length) && Number(length) <= CLAIM_BODY_MAX);
}

/** 413 now, then the connection closed: the announced body is never read (nor drained for keep-alive). */
function refuseUnread(req: Req, res: Res): void {
	res.shouldKeepAlive = false;
	res.on("finish", () => req.socket.destroy());
	sendError(res, new StoreClientError("A claim has no body", 413, "PAYLOAD_TOO_LARGE"));
}

const REVOKED = "This token was revoked (password reset or role change): sign in again";
/** How often a gateway re-reads revocations, in case it missed a broadcast. */
const REVOCATION_REREAD_MS = 3_000;

type ApiThis = Service & {
	config: Config;
	gate: ClaimGate;
	claims: ClaimRoute;
	/** public/, served from memory before moleculer-web (null when this install has none). */
	pages: Pages | null;
	verifyBearer: BearerVerifier;
	revocations: TokenRevocations;
	revocationTimer: NodeJS.Timeout | null;
	learnRevocations(): Promise<void>;
	/** The gateway's own HTTP server: claims to the fast path, everything else to moleculer-web. */
	server: http.Server;
	/** Set when the node stops: every answer from then on closes its connection. */
	closing: boolean;
	/** Nodes whose attempt counters are their own for now (Redis away), with why and when last told. */
	degradedNodes: Map<string, { reason: string; at: number }>;
	httpHandler(req: Req, res: Res): void;
	learnSchedule(): Promise<void>;
	learnFlags(): Promise<void>;
};

/**
 * The HTTP gateway: moleculer-web in middleware mode (`server: false`) behind the gateway's own
 * HTTP server, which sends the claim route to the fast path (services/api/claim-route.ts) and
 * everything else to moleculer-web's `httpHandler`. A schema factory: the routes come from the
 * typed config when the schema is made.
 */
export function ApiService(config: Config): ServiceSchema<ServiceSettingSchema, ApiThis> {
	return {
		name: "api",
		mixins: [ApiGateway],

		settings: {
			server: false,
			port: config.port,
			ip: config.host,
			logRequest: "debug",
			logResponse: "debug",
			log4XXResponses: false,
			// Request bodies hold passwords and card numbers: never logged, at any level.
			logRequestParams: null,
			logResponseData: null,
			routes: apiRoutes(config),
			onError: (_req: Req, res: Res, err: ErrorLike) => void sendError(res, err),
		},

		events: {
			[SOLD_OUT_FLAG](this: ApiThis, ctx: Context<SoldOutFlag>) {
				// Only a flag a node signed, recent, with no longer a lease than ours (lib/identity.ts).
				const now = Date.now();
				if (verifyFlag(config.nodeSecret, ctx.params, config.soldOutLeaseMs, now)) this.gate.applyFlag(ctx.params, now);
			},
			[PRODUCT_CHANGED](this: ApiThis, ctx: Context<ProductChanged>) {
				const p = ctx.params;
				if (p.deleted) return this.gate.setSchedule(p.id, null);
				if (p.saleAt) this.gate.setSchedule(p.id, Date.parse(p.saleAt));
				this.gate.withdrawSoldOut(p.id);
			},
			[TOKENS_REVOKED](this: ApiThis, ctx: Context<TokensRevoked>) {
				this.revocations.apply(ctx.params);
			},
			[COUNTERS_DEGRADED](this: ApiThis, ctx: Context<CountersDegraded>) {
				if (ctx.params.degraded) this.degradedNodes.set(ctx.params.nodeID, { reason: ctx.params.reason, at: Date.now() });
				else this.degradedNodes.delete(ctx.params.nodeID);
			},
			"$node.disconnected"(this: ApiThis, ctx: Context<{ node: { id: string } }>) {
				this.degradedNodes.delete(ctx.params.node.id);
			},
			"$services.changed"(this: ApiThis) {
				// New products or allocator nodes may have appeared: refresh what the fast path knows.
				this.learnSchedule().catch(() => undefined);
				this.learnFlags().catch(() => undefined);
			},
		},

		methods: {
			/** moleculer-web's authentication hook: the verified token's user becomes ctx.meta.user. */
			async authenticate(this: ApiThis, ctx: Context<unknown, StoreMeta>, _route: unknown, req: Req): Promise<AuthUser> {
				const user = await this.verifyBearer(req);
				if (!user) throw unauthorized();
				// Revoked tokens (password reset, role change): from memory, then authoritatively (these
				// routes are not the claim route, which has only the memory).
				if (this.revocations.revoked(user)) throw unauthorized(REVOKED);
				const { notBefore }: { notBefore: number | null } = await ctx.call("users.notBefore", { id: user.id });
				if (notBefore !== null) {
					this.revocations.apply({ userId: user.id, notBefore });
					if (this.revocations.revoked(user)) throw unauthorized(REVOKED);
				}
				// What the services believe (lib/identity.ts): the verified user, signed with the nodes' secret.
				ctx.meta.identity = signIdentity(config.nodeSecret, user);
				return user;
			},

			async authorize(this: ApiThis, ctx: Context<unknown, StoreMeta>, route: { opts: { adminOnly?: boolean } }) {
				if (route.opts.adminOnly && ctx.meta.user?.role !== "admin") throw forbidden();
			},

			/** moleculer-web's own error hook, overridden on purpose: one place shapes and logs errors. */
			errorHandler(this: ApiThis, _req: Req, res: Res, err: ErrorLike) {
				// A request caught by its node's stop (the database closing under it) is not a bug:
				// the buyer is told to try again, and the next try reaches a node that runs.
				if (this.closing && errorBody(err).status === 500) return void sendError(res, unavailable("This server is restarting; try again", "SERVICE_UNAVAILABLE", 1));
				if (sendError(res, err) === 500) this.logger.error("Request failed:", err.name, err.message, err.stack);
			},

			/** The sale schedule, for the not-open fast path; kept fresh by products.changed. */
			async learnSchedule(this: ApiThis) {
				if (!(this.broker.registry as unknown as { hasService(name: string): boolean }).hasService("products")) return;
				const rows: { id: string; saleAt: string }[] = await this.broker.call("products.schedule");
				for (const r of rows) this.gate.setSchedule(r.id, Date.parse(r.saleAt));
			},

			/** Revocations still in force, for a gateway that starts late or missed a broadcast. */
			async learnRevocations(this: ApiThis) {
				if (!(this.broker.registry as unknown as { hasService(name: string): boolean }).hasService("users")) return;
				const list: TokensRevoked[] = await this.broker.call("users.revocations");
				for (const r of list) this.revocations.apply(r);
				this.revocations.prune(Date.now() / 1000, config.jwtExpiresInSeconds + 60);
			},

			/** Sold-out flags held by every allocator node, for a gateway that starts mid-sale. */
			async learnFlags(this: ApiThis) {
				await Promise.all(
					availableNodes(this.broker, "allocator.flags").map(async nodeID => {
						const flags: SoldOutFlag[] = await this.broker.call("allocator.flags", {}, { nodeID });
						const now = Date.now();
						for (const f of flags) if (verifyFlag(config.nodeSecret, f, config.soldOutLeaseMs, now)) this.gate.applyFlag(f, now);
					})
				);
			},
		},

		created(this: ApiThis) {
			this.config = config;
			this.verifyBearer = bearerVerifier(config.jwtSecret);
			this.gate = new ClaimGate(config.claimRatePerSecond, config.soldOutLeaseMs);
			this.revocations = new TokenRevocations();
			this.revocationTimer = null;
			this.degradedNodes = new Map();
			this.claims = new ClaimRoute(this.broker, this.gate, this.verifyBearer, this.revocations, user => signIdentity(config.nodeSecret, user));
			this.pages = loadPages();
			ensureStoreMetrics(this.broker);
			this.closing = false;
			// Slow clients are cut: headers within HTTP_HEADERS_TIMEOUT_MS, the whole request within
			// HTTP_REQUEST_TIMEOUT_MS (Node's defaults, 60 s and 300 s, let a thousand half-sent requests
			// sit for five minutes), checked every second; at most HTTP_MAX_CONNECTIONS at once.
			const options: http.ServerOptions = {
				headersTimeout: config.http.headersTimeoutMs,
				requestTimeout: config.http.requestTimeoutMs,
				connectionsCheckingInterval: 1000,
				maxHeaderSize: MAX_HEADER_BYTES,
			};
			this.server = http.createServer(options, (req, res) => {
				if (this.closing) res.shouldKeepAlive = false;
				const productId = claimTarget(req);
				if (productId !== null) {
					// A claim has no body: one announced beyond a few bytes is refused before a byte of it is read.
					if (claimBodyTooLarge(req)) return refuseUnread(req, res);
					return void this.claims.handle(req, res, productId)?.catch(err => sendError(res, err));
				}
				if (this.pages?.handle(req, res)) return;
				this.httpHandler(req, res);
			});
			// Longer than a load balancer's idle timeout, so the server is never the one to close a
			// kept-alive connection a client is about to reuse (that shows as a reset request).
			this.server.keepAliveTimeout = 65_000;
			this.server.maxHeadersCount = config.http.maxHeaders;
			this.server.maxConnections = config.http.maxConnections;
		},

		async started(this: ApiThis) {
			await new Promise<void>((resolve, reject) => {
				// listen() never settles on EADDRINUSE by itself; fail loudly instead of hanging.
				const onError = (err: NodeJS.ErrnoException) => reject(new Error(`HTTP port ${config.port} is not available: ${err.message}`));
				this.server.once("error", onError);
				// The 10:00 crowd connects at once: Node's default accept backlog (511) overflows, and a
				// dropped SYN is retried by the client a second or three later (measured: p99 5 s for
				// sold-out answers at 1,000 new connections). The kernel caps it at net.core.somaxconn.
				this.server.listen({ port: config.port, host: config.host, backlog: ACCEPT_BACKLOG }, () => {
					this.server.off("error", onError);
					this.server.on("error", err => this.logger.error("HTTP server:", err.message));
					resolve();
				});
			});
			const address = this.server.address() as AddressInfo | null;
			if (address) {
				this.logger.info(`Dopamine Store API on http://127.0.0.1:${address.port}`);
				if (this.pages) for (const line of shopAddresses(`http://127.0.0.1:${address.port}`, mailboxOnly(config))) this.logger.info(line);
			}
			this.learnSchedule().catch(() => undefined);
			this.learnFlags().catch(() => undefined);
			this.learnRevocations().catch(() => undefined);
			// The claim route learns revocations by broadcast; this re-read bounds a missed one to seconds.
			this.revocationTimer = setInterval(() => this.learnRevocations().catch(() => undefined), REVOCATION_REREAD_MS);
			this.revocationTimer.unref();
		},

		async stopped(this: ApiThis) {
			if (this.revocationTimer) clearInterval(this.revocationTimer);
			this.claims.flush();
			if (!this.server.listening) return;
			// Health has said 503 since the broker began stopping (broker.started is false): behind a
			// load balancer, keep serving until its checks have seen that and it sends nothing new.
			if (this.config.gatewayDrainMs > 0) {
				this.logger.info(`Draining: serving ${this.config.gatewayDrainMs} ms more while health says 503`);
				await new Promise(r => setTimeout(r, this.config.gatewayDrainMs));
			}
			// close() only refuses new connections. A kept-alive one that keeps taking requests (a
			// dashboard polling every second) would hold it open for ever, and the node would never
			// stop. So every answer from now on closes its connection, connections are closed as
			// they fall idle, and whatever is still open after one request timeout is cut.
			this.closing = true;
			const closed = new Promise<void>(resolve => this.server.close(() => resolve()));
			this.server.closeIdleConnections();
			const idle = setInterval(() => this.server.closeIdleConnections(), 100);
			const cut = setTimeout(() => this.server.closeAllConnections(), this.config.requestTimeoutMs);
			try {
				await closed;
			} finally {
				clearInterval(idle);
				clearTimeout(cut);
			}
		},
	};
}

export default ApiService;
