import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServiceBroker } from "moleculer";
import type { WireAnswer } from "../../contracts";
import type { BearerVerifier } from "../../lib/auth";
import type { AuthUser } from "../../lib/context";
import type { TokenRevocations } from "../../lib/revocations";
import { notFound, rateLimited, unauthorized, unavailable } from "../../lib/errors";
import { isId } from "../../lib/sql";
import { METRICS } from "../../lib/store-metrics";
import type { ClaimGate } from "./claim-gate";
import { ErrorLike, sendError, sendJson } from "./replies";

/** A claim's path; its one group is the product id. */
const PATH = /^\/api\/products\/([^/?#]*)\/slots\/?(?:\?.*)?$/;

/** The product id when `req` is a claim, else null. */
export function claimTarget(req: IncomingMessage): string | null {
	if (req.method !== "POST" || !req.url!.startsWith("/api/products/")) return null;
	const m = PATH.exec(req.url!);
	return m ? m[1] : null;
}

/** The sold-out answer, built once (at 10:00:00 it is nearly every answer): status, raw header list, body. */
const SOLD_OUT_BODY = JSON.stringify({ name: "ClaimError", message: "Sold out", code: 409, type: "SOLD_OUT" });
const SOLD_OUT_HEADERS = ["Content-Type", "application/json; charset=utf-8", "Content-Length", String(Buffer.byteLength(SOLD_OUT_BODY))];

/** What the gateway answers by itself, counted per answer in plain numbers. */
type LocalOutcome = "RATE_LIMITED" | "SALE_NOT_OPEN" | "SOLD_OUT";

/** How often counted answers are added to the claims metric (each add hashes its labels). */
const METRICS_FLUSH_MS = 1000;

/**
 * POST /api/products/:id/slots: the one route that must be fast at 10:00:00. The gateway's own
 * HTTP server hands it here before moleculer-web's pipeline (no body parsing, alias resolution or
 * hooks). Token first (401), then what this gateway can answer from memory (429 flood, 409 not
 * open, 409 sold out), and only then one call to the product's actor.
 */
export class ClaimRoute {
	private readonly counted: Record<LocalOutcome, number> = { RATE_LIMITED: 0, SALE_NOT_OPEN: 0, SOLD_OUT: 0 };
	private flushTimer: NodeJS.Timeout | null = null;
	/** Each buyer's claim in flight from this gateway, by product: a second one rides on it (no second hop, no second place in line). */
	private readonly inFlight = new Map<string, Promise<WireAnswer>>();

	constructor(
		private readonly broker: ServiceBroker,
		private readonly gate: ClaimGate,
		private readonly verify: BearerVerifier,
		private readonly revocations: TokenRevocations,
		/** The buyer's identity signed with the nodes' secret, for the hop to the actor (lib/identity.ts). */
		private readonly sign: (user: AuthUser) => string
	) {}

	/**
	 * Answers a claim. Everything the gateway answers by itself happens right here, synchronously
	 * (no promise, nothing allocated for a sold-out answer but what Node's HTTP needs); only a
	 * claim for the actor returns a promise.
	 */
	handle(req: IncomingMessage, res: ServerResponse, productId: string): Promise<void> | undefined {
		let user: AuthUser | null;
		try {
			user = this.verify.now(req);
		} catch {
			user = null;
		}
		// A revoked token (password reset, role change) is known from memory: no database read here.
		if (!user || this.revocations.revoked(user)) return void sendError(res, unauthorized());
		if (!isId(productId)) return void sendError(res, notFound("Product", "PRODUCT_NOT_FOUND"));
		const now = Date.now();
		const waitMs = this.gate.rateLimit(user.id, now);
		if (waitMs > 0) {
			this.count("RATE_LIMITED");
			return void sendError(res, rateLimited(waitMs / 1000, "Too many claims; slow down"));
		}
		const opensAt = this.gate.notOpenUntil(productId, now);
		if (opensAt !== null) {
			this.count("SALE_NOT_OPEN");
			return void sendJson(res, 409, { name: "ClaimError", message: "The sale has not opened yet", code: 409, type: "SALE_NOT_OPEN", data: { saleAt: new Date(opensAt).toISOString() } });
		}
		if (this.gate.soldOut(productId, now)) {
			this.count("SOLD_OUT");
			res.writeHead(409, SOLD_OUT_HEADERS);
			res.end(SOLD_OUT_BODY);
			return;
		}
		return this.ask(res, productId, user);
	}

	/** Adds the answers counted so far to the claims metric; the service calls it when it stops. */
	flush(): void {
		if (this.flushTimer) clearTimeout(this.flushTimer);
		this.flushTimer = null;
		for (const outcome of Object.keys(this.counted) as LocalOutcome[]) {
			const n = this.counted[outcome];
			if (n === 0) continue;
			this.counted[outcome] = 0;
			this.broker.metrics.increment(METRICS.claims, { outcome, source: "gateway" }, n);
		}
	}

	/** The first answer after a quiet second shows on /metrics at once; the rest are added a second later, together. */
	private count(outcome: LocalOutcome): void {
		this.counted[outcome]++;
		if (this.flushTimer) return;
		this.flush();
		this.flushTimer = setTimeout(() => this.flush(), METRICS_FLUSH_MS);
		this.flushTimer.unref();
	}

	private async ask(res: ServerResponse, productId: string, user: AuthUser): Promise<void> {
		let a: WireAnswer;
		try {
			const key = `${productId}|${user.id}`;
			let call = this.inFlight.get(key);
			if (!call) {
				call = this.broker.call<WireAnswer, { productId: string }>("allocator.claim", { productId }, { meta: { identity: this.sign(user) } });
				this.inFlight.set(key, call);
				const done = () => void this.inFlight.delete(key);
				call.then(done, done);
			}
			a = await call;
		} catch (err) {
			// The owner died or timed out and the retries ran out: not a bug, a moment to wait out.
			const e = err as ErrorLike;
			if (e.retryable) return void sendError(res, unavailable("The sale is moving to another node; try again", "UNAVAILABLE", 1));
			return void sendError(res, e);
		}
		switch (a.outcome) {
			case "GRANTED":
				return sendJson(res, 201, { slot: a.slot }, { Location: "/api/me/slots" });
			case "SOLD_OUT":
				return sendJson(res, 409, { name: "ClaimError", message: "Sold out", code: 409, type: "SOLD_OUT", data: { epoch: a.epoch, seq: a.seq } });
			case "ALREADY_HOLDING":
				return sendJson(res, 409, { name: "ClaimError", message: "You already hold a slot for this product", code: 409, type: "ALREADY_HOLDING", data: { epoch: a.epoch, seq: a.seq, slot: a.slot } });
			case "SALE_NOT_OPEN":
				return sendJson(res, 409, { name: "ClaimError", message: "The sale has not opened yet", code: 409, type: "SALE_NOT_OPEN", data: { epoch: a.epoch, seq: a.seq, saleAt: a.saleAt } });
		}
	}
}
