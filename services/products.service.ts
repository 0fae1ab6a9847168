import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { EntityManager } from "typeorm";
import { Product } from "../entities";
import { publicProduct } from "../entities/Product";
import { ConfigMixin } from "../mixins/config.mixin";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import type { Ctx } from "../lib/context";
import { conflict, invalid, notFound } from "../lib/errors";
import { isId } from "../lib/sql";
import { PRODUCT_CHANGED, ProductChanged } from "../contracts";
import * as units from "../store/slots";
import * as productRows from "../store/products";

/** Reads may be retried after a timeout (moleculer.config.ts retries nothing else). */
const IDEMPOTENT = { enabled: true };


const MAX_STOCK = 1_000_000;
/**
 * Units laid out inside the create request; a larger stock is laid out in steps of this size after
 * the answer (tracked by `stock_target`, resumed at start), so creating a product never nears the
 * request timeout and is never repeated by a retry. Each step is one transaction that keeps
 * AVAILABLE + HELD + PAID = stock.
 */
const UNITS_PER_STEP = 50_000;

const fields = {
	name: { type: "string", trim: true, min: 1, max: 200 },
	description: { type: "string", max: 5000, optional: true, multiline: true },
	price: { type: "number", min: 0, max: 9_999_999_999.99, convert: false },
	stock: { type: "number", integer: true, min: 0, max: MAX_STOCK, convert: false },
	saleAt: { type: "date", convert: true },
};
const idParam = { type: "string", max: 40 };
/** Fresh reads of the list, per node and second, for ids the cached list lacks. */
const LIST_REFRESHES_ON_MISS_PER_SECOND = 4;

interface ProductFields {
	name: string;
	description?: string;
	price: number;
	stock: number;
	saleAt: Date;
}

type ProductsThis = WithDb & {
	/** Fresh reads of the list for ids it lacked, in the current second (refreshWindow). */
	refreshWindow: number;
	refreshesInWindow: number;
	load(em: EntityManager, id: string, lock?: boolean): Promise<Product>;
	remainingOf(em: EntityManager, ids: string[]): Promise<Map<string, number>>;
	view(em: EntityManager, p: Product): Promise<ReturnType<typeof publicProduct>>;
	changeStock(em: EntityManager, p: Product, stock: number): Promise<void>;
	announce(p: Product): void;
	forgetReads(): void;
	layOutStock(id: string): Promise<void>;
	layingOut: Set<string>;
};


const productHasOrders = (p: Product) =>
	conflict("This product has orders (a unit was held, paid or expired); its schedule and existence are final", "PRODUCT_HAS_ORDERS", {
		saleAt: p.saleAt.toISOString(),
	});

function validSaleAt(d: Date): Date {
	if (Number.isNaN(d.getTime())) throw invalid("The 'saleAt' field must be a valid date.");
	return d;
}

const ProductsService: ServiceSchema<ServiceSettingSchema, ProductsThis> = {
	name: "products",
	mixins: [ConfigMixin(), DbMixin()],

	actions: {
		list: {
			retryPolicy: IDEMPOTENT,
			// Cached briefly (PRODUCT_CACHE_TTL_SECONDS, moleculer.config.ts): every buyer's page asks at 10:00.
			// One read per TTL reaches PostgreSQL however many ask at once (lock: the rest wait for it).
			// The key names nothing a caller sends: the list reads no params, so `?b=1`, `?b=2`... are one
			// entry, not one query and one cache entry each (issue 22, point 2).
			cache: { keygen: (name: string) => name, lock: { enabled: true } },
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
			retryPolicy: IDEMPOTENT,
			visibility: "public",
			params: {},
			async handler(this: ProductsThis) {
				const rows = await productRows.schedule(this.db);
				return rows.map(r => ({ id: String(r.id), saleAt: r.sale_at.toISOString() }));
			},
		},

		get: {
			retryPolicy: IDEMPOTENT,
			cache: { keys: ["id"], lock: { enabled: true } },
			params: { id: idParam },
			async handler(this: ProductsThis, ctx: Ctx<{ id: string }>) {
				// An id not in the (cached) list is not found without a query of its own: a crawl of made-up
				// ids costs at most LIST_REFRESHES_ON_MISS_PER_SECOND fresh reads of the list, and leaves no
				// cache entry per id behind. The fresh read covers a product made a moment ago on another
				// node whose products.changed has not reached this one yet.
				const known = async () => ((await this.actions.list({}, { parentCtx: ctx })) as { products: { id: string }[] }).products.some(x => x.id === ctx.params.id);
				if (!(await known())) {
					const second = Math.floor(Date.now() / 1000);
					if (second !== this.refreshWindow) [this.refreshWindow, this.refreshesInWindow] = [second, 0];
					if (!this.broker.cacher || this.refreshesInWindow >= LIST_REFRESHES_ON_MISS_PER_SECOND) throw notFound("Product", "PRODUCT_NOT_FOUND");
					this.refreshesInWindow++;
					await this.broker.cacher.del("products.list");
					if (!(await known())) throw notFound("Product", "PRODUCT_NOT_FOUND");
				}
				const p = await this.load(this.db.manager, ctx.params.id);
				return { product: await this.view(this.db.manager, p) };
			},
		},

		create: {
			auth: "admin",
			params: { $$strict: "remove", ...fields },
			async handler(this: ProductsThis, ctx: Ctx<ProductFields>) {
				const { name, description, price, stock, saleAt } = ctx.params;
				const inline = stock <= UNITS_PER_STEP;
				const product = await this.db.transaction(async em => {
					const p = await em.getRepository(Product).save(
						em.getRepository(Product).create({
							name,
							description: description ?? "",
							price,
							stock: inline ? stock : 0,
							stockTarget: inline ? null : stock,
							saleAt: validSaleAt(saleAt),
						})
					);
					// One AVAILABLE row per unit of stock: the rows the allocator hands out.
					if (inline) await units.createUnits(em, p.id, stock);
					return p;
				});
				this.announce(product);
				if (!inline) void this.layOutStock(String(product.id));
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/products/${product.id}`;
				return { product: publicProduct(product, product.stock) };
			},
		},

		update: {
			auth: "admin",
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
				const { id, stock, ...rest } = ctx.params;
				const product = await this.db.transaction(async em => {
					// The row lock serialises stock changes with each other and with deletes.
					const p = await this.load(em, id, true);
					// Once a unit left AVAILABLE the schedule is history: moving it would reopen a sale
					// that has orders (and, moved into the future, let it be deleted).
					if (rest.saleAt !== undefined && validSaleAt(rest.saleAt).getTime() !== p.saleAt.getTime() && (await units.anyUnitOrdered(em, p.id)))
						throw productHasOrders(p);
					if (stock !== undefined) {
						// An explicit stock ends any layout in progress: the admin's number wins.
						p.stockTarget = null;
						if (stock !== p.stock) await this.changeStock(em, p, stock);
					}
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
			auth: "admin",
			params: { id: idParam },
			async handler(this: ProductsThis, ctx: Ctx<{ id: string }>) {
				const removed = await this.db.transaction(async em => {
					const p = await this.load(em, ctx.params.id, true);
					// Slots and payments are orders: never deleted with the product (the foreign keys
					// RESTRICT too, should this check ever miss one).
					if (await units.anyUnitOrdered(em, p.id)) throw productHasOrders(p);
					if (Date.now() >= p.saleAt.getTime())
						throw conflict("The sale of this product has started; it can no longer be deleted", "SALE_STARTED", {
							saleAt: p.saleAt.toISOString(),
						});
					// Its free units, then the row (RESTRICT keeps any other).
					await units.deleteFreeUnits(em, p.id);
					await productRows.deleteProduct(em, p.id);
					return p;
				});
				this.forgetReads();
				this.broker.broadcast(PRODUCT_CHANGED, { id: String(removed.id), deleted: true } satisfies ProductChanged);
				ctx.meta.$statusCode = 204;
				return null;
			},
		},
	},

	events: {
		/** Another products node changed a product: the reads this node cached are out of date. */
		[PRODUCT_CHANGED](this: ProductsThis) {
			this.forgetReads();
		},
	},

	methods: {
		async load(this: ProductsThis, em: EntityManager, id: string, lock = false) {
			if (!isId(id)) throw notFound("Product", "PRODUCT_NOT_FOUND");
			const p = await em.getRepository(Product).findOne({ where: { id }, lock: lock ? { mode: "pessimistic_write" } : undefined });
			if (!p) throw notFound("Product", "PRODUCT_NOT_FOUND");
			return p;
		},

		remainingOf(this: ProductsThis, em: EntityManager, ids: string[]) {
			return units.remainingOf(em, ids);
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
			const { active } = await units.unitCounts(em, p.id);
			if (stock < active)
				throw conflict(`Stock cannot go below the ${active} slots held or paid`, "STOCK_BELOW_HELD", { held: active, stock: p.stock });
			const delta = stock - p.stock;
			if (delta > 0) await units.addUnits(em, p.id, stock, delta);
			else if ((await units.removeFreeUnits(em, p.id, -delta)) !== -delta)
				throw conflict("Free slots changed while lowering stock; try again", "STOCK_CHANGED");
			// Invariant: AVAILABLE + HELD + PAID = stock.
			const { live } = await units.unitCounts(em, p.id);
			if (live !== stock) throw new Error(`invariant broken: ${live} live slot rows for stock ${stock}`);
			p.stock = stock;
		},

		/**
		 * Lays a large stock out in steps, each one transaction under the product's row lock that
		 * adds units and raises `stock` with them, announced like any stock change. The admin follows
		 * `stock` growing to `stockTarget`; a node that stops mid-way is resumed by the next start.
		 */
		async layOutStock(this: ProductsThis, id: string) {
			if (this.layingOut.has(id)) return;
			this.layingOut.add(id);
			try {
				for (;;) {
					const p = await this.db.transaction(async em => {
						const p = await em.getRepository(Product).findOne({ where: { id }, lock: { mode: "pessimistic_write" } });
						if (!p || p.stockTarget === null) return null;
						// While a layout runs the live units are exactly 1..stock (an admin's stock change ends
						// the layout; claims and reclaims keep units), so the next ones follow on.
						const next = Math.min(p.stockTarget, p.stock + UNITS_PER_STEP);
						await units.createUnits(em, p.id, next, p.stock + 1);
						p.stock = next;
						if (next === p.stockTarget) p.stockTarget = null;
						return em.getRepository(Product).save(p);
					});
					if (!p) return;
					this.announce(p);
					if (p.stockTarget === null) return;
				}
			} catch (err) {
				this.logger.warn(`Laying out the stock of product ${id}:`, (err as Error).message);
			} finally {
				this.layingOut.delete(id);
			}
		},

		/** Drops this node's cached product reads (at once: the in-memory cacher cleans synchronously). */
		forgetReads(this: ProductsThis) {
			void this.broker.cacher?.clean("products.**");
		},

		announce(this: ProductsThis, p: Product) {
			// Before the answer: the admin's next read, on this node, shows the change.
			this.forgetReads();
			this.broker.broadcast(PRODUCT_CHANGED, {
				id: String(p.id),
				stock: p.stock,
				saleAt: p.saleAt.toISOString(),
			} satisfies ProductChanged);
		},
	},

	created(this: ProductsThis) {
		this.layingOut = new Set();
		this.refreshWindow = 0;
		this.refreshesInWindow = 0;
	},

	started(this: ProductsThis) {
		// Stock layouts a stopped node left unfinished.
		productRows.productsBelowTarget(this.db).then(
			ids => ids.forEach(id => void this.layOutStock(id)),
			err => this.logger.warn("resuming stock layouts:", err.message)
		);
	},
};

export default ProductsService;
