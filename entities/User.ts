import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from "typeorm";

export type Role = "buyer" | "admin";

@Entity({ name: "users" })
export class User {
	/** bigint: pg hands it back as a string, which is also the contract's id type. */
	@PrimaryGeneratedColumn({ type: "bigint" })
	id!: string;

	/** Unique case-insensitively: a unique index on lower(login_id). */
	@Column({ name: "login_id", type: "varchar", length: 32 })
	loginId!: string;

	@Column({ type: "varchar", length: 254 })
	email!: string;

	@Column({ name: "password_hash", type: "text", select: false })
	passwordHash!: string;

	@Column({ type: "varchar", length: 16, default: "buyer" })
	role!: Role;

	/** Balance for the `points` payment method. */
	@Column({ type: "integer", default: 100000 })
	points!: number;

	@CreateDateColumn({ name: "created_at", type: "timestamptz" })
	createdAt!: Date;

	/** Access tokens issued (iat) before this whole second are revoked: set by a password reset and, by trigger, a role change. */
	@Column({ name: "tokens_not_before", type: "timestamptz", nullable: true, select: false })
	tokensNotBefore!: Date | null;
}

/** What leaves the users service: never the hash. */
export interface PublicUser {
	id: string;
	loginId: string;
	email: string;
	role: Role;
}

export function publicUser(u: Pick<User, "id" | "loginId" | "email" | "role">): PublicUser {
	return { id: String(u.id), loginId: u.loginId, email: u.email, role: u.role };
}
