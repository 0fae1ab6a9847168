import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from "typeorm";

const numeric = {
	to: (v: number) => v,
	from: (v: string | null) => (v === null ? null : Number(v)),
};

@Entity({ name: "products" })
export class Product {
	@PrimaryGeneratedColumn({ type: "bigint" })
	id!: string;

	@Column({ type: "varchar", length: 200 })
	name!: string;

	@Column({ type: "text", default: "" })
	description!: string;

	@Column({ type: "numeric", precision: 12, scale: 2, transformer: numeric })
	price!: number;

	/** Invariant: stock = AVAILABLE + HELD + PAID slot rows of this product. */
	@Column({ type: "integer" })
	stock!: number;

	@Column({ name: "sale_at", type: "timestamptz" })
	saleAt!: Date;

	/**
	 * Ownership fence for the allocator: an actor that takes the product over bumps it, and
	 * every batch commit checks it is still its own.
	 */
	@Column({ type: "integer", default: 0 })
	epoch!: number;

	/** While a large stock is being laid out in steps, the stock asked for; NULL once reached. */
	@Column({ name: "stock_target", type: "integer", nullable: true })
	stockTarget!: number | null;

	@CreateDateColumn({ name: "created_at", type: "timestamptz" })
	createdAt!: Date;

	@UpdateDateColumn({ name: "updated_at", type: "timestamptz" })
	updatedAt!: Date;
}

export type ProductStatus = "SCHEDULED" | "ON_SALE" | "SOLD_OUT";

export interface PublicProduct {
	id: string;
	name: string;
	description: string;
	price: number;
	stock: number;
	saleAt: string;
	remaining: number;
	status: ProductStatus;
	/** Present while a large stock is still being laid out: the stock asked for (`stock` grows to it). */
	stockTarget?: number;
}

export function productStatus(saleAt: Date, remaining: number, now = Date.now()): ProductStatus {
	if (now < saleAt.getTime()) return "SCHEDULED";
	return remaining > 0 ? "ON_SALE" : "SOLD_OUT";
}

export function publicProduct(p: Product, remaining: number, now = Date.now()): PublicProduct {
	return {
		id: String(p.id),
		name: p.name,
		description: p.description,
		price: p.price,
		stock: p.stock,
		saleAt: p.saleAt.toISOString(),
		remaining,
		status: productStatus(p.saleAt, remaining, now),
		...(p.stockTarget !== null && p.stockTarget !== undefined ? { stockTarget: p.stockTarget } : {}),
	};
}
