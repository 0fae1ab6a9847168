import { loadConfig } from "../../config";
import { chatSafe, operatorMessages } from "../../lib/messages";
import { isOneEmail } from "../../lib/validation";
import { discordPayload } from "../../services/notifier/transports/discord";
import { EmailTransport } from "../../services/notifier/transports/email";
import { slackPayload } from "../../services/notifier/transports/slack";
import { CHANNELS } from "../../services/notifier/transports";

/** Issue 22, point 5: one address per recipient; user-supplied parts of chat texts neither mention nor link. */
describe("one address", () => {
	it("accepts one address and refuses lists, display names, quoted parts and groups", () => {
		for (const ok of ["a@example.com", "first.last+tag@sub.example.co.kr", "x_y-z@a-b.example"]) expect([ok, isOneEmail(ok)]).toEqual([ok, true]);
		for (const bad of ["a@example.com,b@example.org", "a@example.com;b@example.org", "A <a@example.com>", '"a,b"@example.com', "a@example.com b@example.org", "a..b@example.com", "a@example", "g: a@example.com;"])
			expect([bad, isOneEmail(bad)]).toEqual([bad, false]);
	});

	it("the SMTP transport refuses a recipient that is not one address, for good, before connecting", async () => {
		const t = new EmailTransport("smtp://127.0.0.1:1", "Store <s@example.com>", 1, "example.com");
		try {
			await expect(t.send({ id: "1", kind: "k", channel: "email", recipient: "a@example.com,b@example.org", subject: "s", text: "t" } as never)).rejects.toMatchObject({
				message: expect.stringMatching(/not exactly one address/),
				permanent: true,
			});
		} finally {
			await t.close();
		}
	});

	it("refuses an ADMIN_EMAIL that is a list", () => {
		expect(() => loadConfig({ ADMIN_LOGIN_ID: "admin", ADMIN_PASSWORD: "long-enough-1", ADMIN_EMAIL: "a@example.com,b@example.org" }, CHANNELS)).toThrow(/ADMIN_EMAIL must be exactly one/);
	});
});

describe("chat texts", () => {
	const hostile = "<!channel> Drop <@U123> @everyone <https://evil.example/x|click> [free](https://evil.example) evil.example";

	it("a product's name cannot mention or link in Slack or Discord", () => {
		const m = operatorMessages.saleOpened("en", { id: "7", name: hostile, stock: 3, saleAt: "2026-12-04T10:00:00Z" });
		for (const payload of [JSON.stringify(slackPayload(m)), JSON.stringify(discordPayload(m))]) {
			expect(payload).not.toMatch(/<!channel>|<@U123>|<https?:|\]\(https?:|https?:\/\/|evil\.example|@everyone/);
			// Still readable: the words are there.
			expect(payload).toContain("Drop");
		}
		expect(discordPayload(m).allowed_mentions).toEqual({ parse: [] });
	});

	it("a buyer's address and an SMTP error in the 'finally failed' list are inert too", () => {
		const m = operatorMessages.deliveriesFailed("en", { failures: [{ id: "1", kind: "k", channel: "email", recipient: "x@evil.example", attempts: 8, lastError: "SMTP 550 <!here> see https://evil.example" }] });
		expect(JSON.stringify(slackPayload(m))).not.toMatch(/<!here>|https?:\/\/|evil\.example|x@evil/);
		expect(chatSafe("plain name")).toBe("plain name");
	});
});

describe("the simulated payment ledger (issue 22, point 10)", () => {
	it("forgets charges older than its retention, oldest first", async () => {
		const { SimulatedLedger } = await import("../../services/payments/provider");
		let now = 1_000_000;
		const ledger = new SimulatedLedger(60_000, () => now);
		const approve = () => Promise.resolve({ approved: true as const, reference: "r" });
		for (let i = 0; i < 100; i++) await ledger.charge(`k-${i}`, approve);
		expect(ledger.size).toBe(100);
		now += 30_000;
		await ledger.charge("k-late", approve);
		expect(ledger.size).toBe(101);
		now += 31_000;
		// The first hundred are past the minute; the late one is not.
		await ledger.charge("k-last", approve);
		expect(ledger.size).toBe(2);
		// A forgotten key is decided anew; a remembered one answers its first result.
		let decided = 0;
		const counted = () => (decided++, approve());
		await ledger.charge("k-0", counted);
		expect(decided).toBe(1);
		await ledger.charge("k-late", counted);
		expect(decided).toBe(1);
	});
});
