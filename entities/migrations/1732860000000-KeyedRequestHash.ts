import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * payments.request_hash was an unkeyed SHA-256 over the request's fields, the full card number
 * among them; with the slot id and last4 in the same row it could be brute-forced. New rows carry
 * an HMAC (services/payments.service.ts requestHash). The old ones cannot be rehashed (the card
 * number is kept nowhere), so they are cleared: a replay of such an old request under its
 * Idempotency-Key answers 409 IDEMPOTENCY_KEY_REUSED instead of matching.
 */
export class KeyedRequestHash1732860000000 implements MigrationInterface {
	name = "KeyedRequestHash1732860000000";

	async up(q: QueryRunner): Promise<void> {
		await q.query(`UPDATE payments SET request_hash = NULL WHERE request_hash IS NOT NULL`);
	}

	async down(): Promise<void> {
		// Nothing to restore: the cleared hashes were the leak.
	}
}
