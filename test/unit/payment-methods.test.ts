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

	// The page draws one choice per method from that answer, and each method's own fields from its
	// `inputs`: its HTML and its words hold none of them.
	it("describes every field a method takes for the page, in every locale, so the page holds none", () => {
		for (const p of providers(0).values()) {
			const inputs = p.inputs ?? [];
			expect([p.method, inputs.map(i => i.name)]).toEqual([p.method, Object.keys(p.fields)]);
			for (const i of inputs) {
				for (const words of [i.labels, i.hints, ...(i.choices ?? []).map(c => c.names)].filter(Boolean))
					expect([p.method, i.name, typeof words!.ko, typeof words!.en]).toEqual([p.method, i.name, "string", "string"]);
				// A list offers exactly what the validator takes.
				const rule = p.fields[i.name] as { type: string; values?: string[] };
				if (i.choices) expect([p.method, i.choices.map(c => c.value)]).toEqual([p.method, rule.values]);
				else expect([p.method, i.name, rule.type]).toEqual([p.method, i.name, "string"]);
			}
		}
		const html = readFileSync(join(ROOT, "public", "p.html"), "utf8");
		const words = readFileSync(join(ROOT, "public", "app.js"), "utf8");
		expect(html).not.toMatch(/data-method-fields=/);
		for (const m of PAYMENT_METHODS)
			for (const i of m.inputs) expect([m.method, i.name, html.includes(`name="${i.name}"`), words.includes(i.labels.en)]).toEqual([m.method, i.name, false, false]);
	});

	it("is the only place outside the providers that names a method in code", () => {
		const named = filesUnder("services", "lib", "public")
			.filter(f => /\.(ts|js)$/.test(f) && !f.includes(join("services", "payments") + "/"))
			.filter(f => /["']easypay["']|["']points["']/.test(readFileSync(f, "utf8")));
		expect(named).toEqual([]);
	});
});
