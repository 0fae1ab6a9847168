import type { ServerResponse } from "node:http";

/**
 * How the gateway answers: JSON in moleculer-web's error shape (name, message, code, type, data),
 * written in one call, never a stack, internals or echoed input.
 */

export interface ErrorLike {
	name?: string;
	message?: string;
	code?: unknown;
	status?: number;
	type?: string;
	data?: unknown;
	stack?: string;
	retryable?: boolean;
}

/** body-parser's failures, in the contract's words. */
const BODY_ERRORS: Record<string, [number, string, string]> = {
	"entity.parse.failed": [400, "INVALID_JSON", "The request body is not valid JSON"],
	"entity.too.large": [413, "PAYLOAD_TOO_LARGE", "The request body is too large"],
	"encoding.unsupported": [415, "UNSUPPORTED_ENCODING", "The request body's content encoding is not supported"],
	"charset.unsupported": [415, "UNSUPPORTED_CHARSET", "The request body's charset is not supported"],
	"request.aborted": [400, "REQUEST_ABORTED", "The request was aborted"],
};

/** What an error becomes on the wire: moleculer-web's shape, no stack, no internals, no echoed input. */
export function errorBody(err: ErrorLike): { status: number; body: Record<string, unknown> } {
	const body = err.type ? BODY_ERRORS[err.type] : undefined;
	if (body) {
		const [status, type, message] = body;
		return { status, body: { name: "BadRequestError", message, code: status, type } };
	}
	// Every endpoint of the service is down or its breaker open (moleculer answers 404 for that), or
	// no node runs it at all: the route exists, the service cannot serve right now.
	if (NO_ENDPOINT.has(err.type ?? ""))
		return { status: 503, body: { name: "ServiceUnavailableError", message: "This service is not available just now; try again", code: 503, type: "SERVICE_UNAVAILABLE", data: { retryAfter: 1 } } };
	const status = typeof err.code === "number" && err.code >= 400 && err.code < 600 ? err.code : (err.status ?? 500);
	if (status >= 500 && !err.retryable && status !== 503 && status !== 504) {
		return { status: 500, body: { name: "InternalServerError", message: "Something went wrong on our side", code: 500, type: "INTERNAL_ERROR" } };
	}
	// A 5xx's own text may carry the driver's (connect ECONNREFUSED 127.0.0.1:5432), a node id or an
	// action name: buyers get the contract's words for its type; the text is logged where it arose.
	const message = status >= 500 ? (UNAVAILABLE_MESSAGES[err.type ?? ""] ?? (status === 504 ? TIMED_OUT : NOT_AVAILABLE)) : err.message;
	return { status, body: { name: err.name, message, code: status, type: err.type, data: withoutInternals(err.data) } };
}

const NOT_AVAILABLE = "This service is not available just now; try again";
const TIMED_OUT = "This took too long to answer; try again";
/** What a 503 or 504 says, by its type: never the text of the error behind it. */
const UNAVAILABLE_MESSAGES: Record<string, string> = {
	BUSY: "Too many claims for this sale right now; try again",
	UNAVAILABLE: "The sale is not reachable just now; try again",
	MOVED: "The sale is moving to another node; try again",
	SERVICE_UNAVAILABLE: NOT_AVAILABLE,
	NOT_READY: "Not ready",
	REQUEST_TIMEOUT: TIMED_OUT,
};

/** Moleculer's "no endpoint" errors. */
const NO_ENDPOINT = new Set(["SERVICE_NOT_AVAILABLE", "SERVICE_NOT_FOUND"]);

/**
 * What never leaves the gateway in an error's `data`: where it happened (nodeID, action, the
 * broker's other fields), stacks, and (validation errors) the offending value, which may be a password.
 */
const INTERNAL = new Set(["nodeID", "action", "stack", "actual", "requestID", "level", "timeout", "retryable"]);

function withoutInternals(data: unknown, depth = 0): unknown {
	if (!data || typeof data !== "object" || depth > 4) return data;
	if (Array.isArray(data)) return data.map(d => withoutInternals(d, depth + 1));
	const out: Record<string, unknown> = {};
	for (const [k, v] of Object.entries(data as Record<string, unknown>)) if (!INTERNAL.has(k)) out[k] = withoutInternals(v, depth + 1);
	return Object.keys(out).length ? out : undefined;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
	const text = body === null ? "" : JSON.stringify(body);
	res.writeHead(status, { ...headers, "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text) });
	res.end(text);
}

/** An error as the contract's JSON, with Retry-After on 429 and 503. Returns the status sent. */
export function sendError(res: ServerResponse, err: ErrorLike): number {
	const { status, body } = errorBody(err);
	const retryAfter = ((body.data ?? err.data) as { retryAfter?: number } | undefined)?.retryAfter ?? (status === 503 || status === 429 ? 1 : undefined);
	if (res.headersSent) {
		res.end();
		return status;
	}
	sendJson(res, status, body, retryAfter !== undefined ? { "Retry-After": String(retryAfter) } : undefined);
	return status;
}
