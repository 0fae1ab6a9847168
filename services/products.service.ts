import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { EntityManager } from "typeorm";
import { Product } from "../entities";
import { publicProduct } from "../entities/Product";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import type { Ctx } from "../lib/context";
import { conflict, forbidden, invalid, notFound, unauthorized } from "../lib/errors";
import { isId, rowsOf } from "../lib/sql";

/** Broadcast after any change of a product's stock or schedule, for caches and the allocator. */
export const PRODUCT_CHANGED_EVENT = "products.changed";

const MAX_STOCK = 1_000_000;

const fields = {
	name: { type: "string", trim: true, min: 1, max: 200 },
	description: { type: "string", max: 5000, optional: true },
	price: { type: "number", min: 0, max: 9_999_999_999.99, convert: false },
	stock: { type: "number", integer: true, min: 0, max: MAX_STOCK, convert: false },
	saleAt: { type: "date", convert: true },
};
const idParam = { type: "string", max: 40 };

interface ProductFields {
	name: string;
	description?: string;
	price: number;
	stock: number;
	saleAt: Date;
}

type ProductsThis = WithDb & {
	load(em: EntityManager, id: string, lock?: boolean): Promise<Product>;
	remainingOf(em: EntityManager, ids: string[]): Promise<Map<string, number>>;
	view(em: EntityManager, p: Product): Promise<ReturnType<typeof publicProduct>>;
	changeStock(em: EntityManager, p: Product, stock: number): Promise<void>;
	announce(p: Product): void;
};

function requireAdmin(ctx: Ctx<unknown>) {
	if (!ctx.meta.user) throw unauthorized();
	if (ctx.meta.user.role !== "admin") throw forbidden();
}

function validSaleAt(d: Date): Date {
	if (Number.isNaN(d.getTime())) throw invalid("The 'saleAt' field must be a valid date.");
	return d;
}

const ProductsService: ServiceSchema<ServiceSettingSchema, ProductsThis> = {
	name: "products",
	mixins: [ConfigMixin(), DbMixin()],

	actions: {
		list: {
			params: {},
			async handler(this: ProductsThis) {
				const products = await this.db.getRepository(Product).find({ order: { saleAt: "ASC", id: "ASC" } });
				const remaining = await this.remainingOf(this.db.manager, products.map(p => p.id));
				const now = Date.now();
				return { products: products.map(p => publicProduct(p, remaining.get(String(p.id)) ?? 0, now)) };
			},
		},

		/** Every product's opening time, for the gateways' not-open fast path. */
		schedule: {
			visibility: "public",
			params: {},
			async handler(this: ProductsThis) {
				const rows: { id: string; sale_at: Date }[] = await this.db.query(`SELECT id, sale_at FROM products`);
				return rows.map(r => ({ id: String(r.id), saleAt: r.sale_at.toISOString() }));
			},
		},

		get: {
			params: { id: idParam },
			async handler(this: ProductsThis, ctx: Ctx<{ id: string }>) {
				const p = await this.load(this.db.manager, ctx.params.id);
				return { product: await this.view(this.db.manager, p) };
			},
		},

		create: {
			params: { $$strict: "remove", ...fields },
			async handler(this: ProductsThis, ctx: Ctx<ProductFields>) {
				requireAdmin(ctx);
				const { name, description, price, stock, saleAt } = ctx.params;
				const product = await this.db.transaction(async em => {
					const p = await em.getRepository(Product).save(
						em.getRepository(Product).create({ name, description: description ?? "", price, stock, saleAt: validSaleAt(saleAt) })
					);
					// One AVAILABLE row per unit of stock: the rows the allocator hands out.
					await em.query(
						`INSERT INTO slots (product_id, unit) SELECT $1, u FROM generate_series(1, $2::int) AS u`,
						[p.id, stock]
					);
					return p;
				});
				this.announce(product);
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/products/${product.id}`;
				return { product: publicProduct(product, stock) };
			},
		},

		update: {
			params: {
				$$strict: "remove",
				id: idParam,
				name: { ...fields.name, optional: true },
				description: fields.description,
				price: { ...fields.price, optional: true },
				stock: { ...fields.stock, optional: true },
				saleAt: { ...fields.saleAt, optional: true },
			},
			async handler(this: ProductsThis, ctx: Ctx<Partial<ProductFields> & { id: string }>) {
				requireAdmin(ctx);
				const { id, stock, ...rest } = ctx.params;
				const product = await this.db.transaction(async em => {
					// The row lock serialises stock changes with each other and with deletes.
					const p = await this.load(em, id, true);
					if (stock !== undefined && stock !== p.stock) await this.changeStock(em, p, stock);
					if (rest.name !== undefined) p.name = rest.name;
					if (rest.description !== undefined) p.description = rest.description;
					if (rest.price !== undefined) p.price = rest.price;
					if (rest.saleAt !== undefined) p.saleAt = validSaleAt(rest.saleAt);
					return em.getRepository(Product).save(p);
				});
				this.announce(product);
				return { product: await this.view(this.db.manager, product) };
			},
		},

		remove: {
			params: { id: idParam },
			async handler(this: ProductsThis, ctx: Ctx<{ id: string }>) {
				requireAdmin(ctx);
				const removed = await this.db.transaction(async em => {
					const p = await this.load(em, ctx.params.id, true);
					if (Date.now() >= p.saleAt.getTime())
						throw conflict("The sale of this product has started; it can no longer be deleted", "SALE_STARTED", {
							saleAt: p.saleAt.toISOString(),
						});
					await em.query(`DELETE FROM products WHERE id = $1`, [p.id]);
					return p;
				});
				this.broker.broadcast(PRODUCT_CHANGED_EVENT, { id: String(removed.id), deleted: true });
				ctx.meta.$statusCode = 204;
				return null;
			},
		},
	},

	methods: {
		async load(this: ProductsThis, em: EntityManager, id: string, lock = false) {
			if (!isId(id)) throw notFound("Product", "PRODUCT_NOT_FOUND");
			const p = await em.getRepository(Product).findOne({ where: { id }, lock: lock ? { mode: "pessimistic_write" } : undefined });
			if (!p) throw notFound("Product", "PRODUCT_NOT_FOUND");
			return p;
		},

		async remainingOf(this: ProductsThis, em: EntityManager, ids: string[]) {
			const out = new Map<string, number>();
			if (ids.length === 0) return out;
			const rows: { product_id: string; free: string }[] = await em.query(
				`SELECT product_id, count(*) AS free FROM slots
				 WHERE product_id = ANY($1::bigint[]) AND status = 'AVAILABLE' GROUP BY product_id`,
				[ids]
			);
			for (const r of rows) out.set(String(r.product_id), Number(r.free));
			return out;
		},

		async view(this: ProductsThis, em: EntityManager, p: Product) {
			const remaining = await this.remainingOf(em, [p.id]);
			return publicProduct(p, remaining.get(String(p.id)) ?? 0);
		},

		/**
		 * Raising stock adds AVAILABLE rows on the lowest free unit numbers; lowering removes free
		 * rows, highest units first. Never below HELD + PAID. Runs under the product's row lock.
		 */
		async changeStock(this: ProductsThis, em: EntityManager, p: Product, stock: number) {
			const [counts] = (await em.query(
				`SELECT count(*) FILTER (WHERE status IN ('HELD', 'PAID')) AS active,
				        count(*) FILTER (WHERE status = 'AVAILABLE') AS free
				 FROM slots WHERE product_id = $1`,
				[p.id]
			)) as { active: string; free: string }[];
			const active = Number(counts.active);
			if (stock < active)
				throw conflict(`Stock cannot go below the ${active} slots held or paid`, "STOCK_BELOW_HELD", { held: active, stock: p.stock });
			const delta = stock - p.stock;
			if (delta > 0) {
				await em.query(
					`INSERT INTO slots (product_id, unit)
					 SELECT $1, u FROM generate_series(1, $2::int) AS u
					 WHERE NOT EXISTS (SELECT 1 FROM slots s WHERE s.product_id = $1 AND s.unit = u AND s.status <> 'EXPIRED')
					 ORDER BY u LIMIT $3`,
					[p.id, stock, delta]
				);
			} else {
				const removed = rowsOf(
					await em.query(
						`DELETE FROM slots WHERE id IN (
							SELECT id FROM slots WHERE product_id = $1 AND status = 'AVAILABLE'
							ORDER BY unit DESC LIMIT $2 FOR UPDATE)
						 RETURNING id`,
						[p.id, -delta]
					)
				);
				if (removed.length !== -delta)
					throw conflict("Free slots changed while lowering stock; try again", "STOCK_CHANGED");
			}
			// Invariant: AVAILABLE + HELD + PAID = stock.
			const [{ live }] = (await em.query(
				`SELECT count(*) AS live FROM slots WHERE product_id = $1 AND status <> 'EXPIRED'`,
				[p.id]
			)) as { live: string }[];
			if (Number(live) !== stock) throw new Error(`invariant broken: ${live} live slot rows for stock ${stock}`);
			p.stock = stock;
		},

		announce(this: ProductsThis, p: Product) {
			this.broker.broadcast(PRODUCT_CHANGED_EVENT, {
				id: String(p.id),
				stock: p.stock,
				saleAt: p.saleAt.toISOString(),
			});
		},
	},
};

export default ProductsService;
