import { Errors } from "moleculer";

/**
 * The store's errors, in Moleculer's shape: HTTP status as `code`, the contract's reason as
 * `type`, details in `data`. Client errors are never retried; `retryable` ones (the node or the
 * database could not serve just now) are, by Moleculer's retry policy and circuit breaker.
 * Where the caller should wait, `data.retryAfter` (seconds) becomes the `Retry-After` header.
 */
const { MoleculerClientError, MoleculerRetryableError } = Errors;

export type ErrorData = Record<string, unknown> | undefined;

export class StoreClientError extends MoleculerClientError {
	constructor(message: string, code: number, type: string, data?: ErrorData) {
		super(message, code, type, data);
		this.name = "StoreClientError";
	}
}

export class StoreUnavailableError extends MoleculerRetryableError {
	constructor(message: string, type: string, data?: ErrorData) {
		super(message, 503, type, data);
		this.name = "StoreUnavailableError";
	}
}

export const invalid = (message: string, data?: ErrorData) =>
	new StoreClientError(message, 422, "VALIDATION_ERROR", data);
export const badRequest = (message: string, type = "BAD_REQUEST", data?: ErrorData) =>
	new StoreClientError(message, 400, type, data);
export const unauthorized = (message = "Sign in first: a valid bearer token is required", type = "UNAUTHORIZED") =>
	new StoreClientError(message, 401, type);
export const forbidden = (message = "This needs an administrator") =>
	new StoreClientError(message, 403, "FORBIDDEN");
export const notFound = (what: string, type: string) =>
	new StoreClientError(`${what} not found`, 404, type);
export const conflict = (message: string, type: string, data?: ErrorData) =>
	new StoreClientError(message, 409, type, data);
export const rateLimited = (retryAfterSeconds: number, message = "Too many attempts; wait before trying again") =>
	new StoreClientError(message, 429, "RATE_LIMITED", { retryAfter: Math.max(1, Math.ceil(retryAfterSeconds)) });
/** 503 that the caller should not retry on its own (load, or a fault the node must first recover from). */
export const refusedForNow = (message: string, type: string, retryAfterSeconds = 1) =>
	new Errors.MoleculerError(message, 503, type, { retryAfter: retryAfterSeconds });
export const unavailable = (message: string, type = "SERVICE_UNAVAILABLE", retryAfterSeconds = 1) =>
	new StoreUnavailableError(message, type, { retryAfter: retryAfterSeconds });

/** PostgreSQL's unique_violation; `constraint` names the index that refused the row. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
	const e = err as { code?: string; constraint?: string; driverError?: { code?: string; constraint?: string } };
	const code = e?.code ?? e?.driverError?.code;
	const name = e?.constraint ?? e?.driverError?.constraint;
	return code === "23505" && (constraint === undefined || name === constraint);
}
