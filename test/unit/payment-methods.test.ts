import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Validator } from "moleculer";
import PaymentsService from "../../services/payments.service";
import { methodName, PAYMENT_METHODS, providers } from "../../services/payments/index";
import { buyerMessages } from "../../lib/messages";
import { filesUnder, ROOT } from "../helpers/files";

/** Issue 24, point 2: the payment methods are written once, in services/payments/index.ts. */
describe("the payment methods' registry", () => {
	const keys = PAYMENT_METHODS.map(m => m.method);

	it("lists each provider once, with a name in every locale", () => {
		expect(keys).toEqual([...providers(0).keys()]);
		expect(new Set(keys).size).toBe(keys.length);
		expect(keys).toEqual(expect.arrayContaining(["card", "points", "easypay"]));
		for (const m of PAYMENT_METHODS) expect([m.method, typeof m.names.ko, typeof m.names.en]).toEqual([m.method, "string", "string"]);
		// The points special case is the registry's flag, not a method key compared in the service.
		expect(PAYMENT_METHODS.filter(m => m.spendsPoints).map(m => m.method)).toEqual(["points"]);
	});

	it("drives the initiate action's method enum", () => {
		const params = (PaymentsService.actions!.initiate as { params: Record<string, unknown> }).params;
		const check = new Validator().compile(params as never) as (o: unknown) => true | { field: string }[];
		for (const method of keys) expect([method, check({ id: "1", method })]).toEqual([method, true]);
		const refused = check({ id: "1", method: "bitcoin" });
		expect(refused).not.toBe(true);
		expect((refused as { field: string }[])[0].field).toBe("method");
	});

	it("names the method on the receipt in the buyer's words", () => {
		for (const m of PAYMENT_METHODS)
			for (const locale of ["ko", "en"] as const) {
				expect(methodName(m.method, locale)).toBe(m.names[locale]);
				const receipt = buyerMessages.paymentReceipt(locale, { loginId: "hana", productName: "Drop", amount: 1000, method: methodName(m.method, locale), paymentId: "9", paidAt: new Date() });
				expect(receipt.text).toContain(m.names[locale]);
			}
		expect(methodName("unknown", "en")).toBe("unknown");
	});

	it("is what the page's choices come from: GET /api/payment-methods answers the registry itself", () => {
		const methods = PaymentsService.actions!.methods as { handler: () => { methods: unknown } };
		expect(methods.handler.call({} as never).methods).toBe(PAYMENT_METHODS);
	});

	// The page draws one choice per method from that answer. Its HTML keeps a block only for a
	// method's own fields (the card number, the easy-pay provider), and its script reads any block by
	// its data-method-fields, never by a method's own ids.
	it("leaves the page a block per method with fields, and its script names none of them", () => {
		const html = readFileSync(join(ROOT, "public", "p.html"), "utf8");
		const script = readFileSync(join(ROOT, "public", "product.js"), "utf8");
		const blocks = [...html.matchAll(/<div([^>]*)data-method-fields="([^"]+)"[^>]*>([\s\S]*?)<\/div>/g)];
		expect(blocks.length).toBeGreaterThan(0);
		for (const [, , method, inner] of blocks) {
			expect(keys).toContain(method);
			for (const [, id] of inner.matchAll(/id="([^"]+)"/g)) expect([method, id, script.includes(id)]).toEqual([method, id, false]);
		}
	});

	// The page's HTML keeps a block for a method's own fields (card number, easy-pay provider): a
	// method without fields of its own needs none.
	it("is the only place outside the providers that names a method in code", () => {
		const named = filesUnder("services", "lib", "public")
			.filter(f => /\.(ts|js)$/.test(f) && !f.includes(join("services", "payments") + "/"))
			.filter(f => /["']easypay["']|["']points["']/.test(readFileSync(f, "utf8")));
		expect(named).toEqual([]);
	});
});
