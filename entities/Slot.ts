import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from "typeorm";

/**
 * One row per unit of stock. AVAILABLE --claim--> HELD --pay--> PAID; HELD --expire--> EXPIRED.
 * Reclaim turns the row EXPIRED (it stays in the buyer's history) and inserts a fresh
 * AVAILABLE row for the same unit. Schema constraints (see the migration):
 * - (product_id, unit) unique among rows that are not EXPIRED;
 * - user_id is NULL exactly when AVAILABLE (a slot is held by at most one user);
 * - (product_id, user_id) unique among HELD/PAID rows (one active slot per buyer per product).
 */
export type SlotStatus = "AVAILABLE" | "HELD" | "PAID" | "EXPIRED";

@Entity({ name: "slots" })
export class Slot {
	@PrimaryGeneratedColumn({ type: "bigint" })
	id!: string;

	@Column({ name: "product_id", type: "bigint" })
	productId!: string;

	@Column({ type: "integer" })
	unit!: number;

	@Column({ type: "varchar", length: 16, default: "AVAILABLE" })
	status!: SlotStatus;

	@Column({ name: "user_id", type: "bigint", nullable: true })
	userId!: string | null;

	@Column({ name: "held_at", type: "timestamptz", nullable: true })
	heldAt!: Date | null;

	@Column({ name: "expires_at", type: "timestamptz", nullable: true })
	expiresAt!: Date | null;

	@Column({ name: "paid_at", type: "timestamptz", nullable: true })
	paidAt!: Date | null;

	@Column({ name: "expired_at", type: "timestamptz", nullable: true })
	expiredAt!: Date | null;

	/** The allocator's (epoch, seq) of the claim that was granted this slot. */
	@Column({ type: "integer", nullable: true })
	epoch!: number | null;

	@Column({ type: "bigint", nullable: true })
	seq!: string | null;

	@CreateDateColumn({ name: "created_at", type: "timestamptz" })
	createdAt!: Date;
}

export interface PublicSlot {
	id: string;
	productId: string;
	status: Exclude<SlotStatus, "AVAILABLE">;
	heldAt: string | null;
	expiresAt: string | null;
	epoch: number | null;
	seq: number | null;
}

export function publicSlot(s: Slot): PublicSlot {
	return {
		id: String(s.id),
		productId: String(s.productId),
		status: s.status as PublicSlot["status"],
		heldAt: s.heldAt ? s.heldAt.toISOString() : null,
		expiresAt: s.expiresAt ? s.expiresAt.toISOString() : null,
		epoch: s.epoch,
		seq: s.seq === null ? null : Number(s.seq),
	};
}
