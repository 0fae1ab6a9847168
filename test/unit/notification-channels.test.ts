import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Validator } from "moleculer";
import { ChannelSpec, loadConfig, operatorChannels, operatorVariables } from "../../config";
import NotifierService from "../../services/notifier.service";
import { CHANNEL_NAMES, CHANNELS, transportsFor } from "../../services/notifier/transports";
import { filesUnder } from "../helpers/files";

/**
 * Issue 24, point 2: the notification channels are written once, in the transports' registry
 * (services/notifier/transports/index.ts). config/ is handed the registry's specs, so a channel
 * config/ was never told of is read, paced and checked like the built-in ones: a test-only
 * "pager" channel shows it, through loadConfig's own parameter (the one server.ts uses).
 */
const pager: ChannelSpec = {
	name: "pager",
	env: { url: "PAGER_URL" },
	pace: { perMinute: 120, burst: 2 },
	operators: true,
	configured: s => s.url !== null,
};

describe("the notification channels' registry", () => {
	it("lists each channel once: e-mail first, then the operators' chat channels", () => {
		expect(CHANNEL_NAMES).toEqual(["email", "slack", "discord"]);
		expect(new Set(CHANNEL_NAMES).size).toBe(CHANNEL_NAMES.length);
	});

	it("is what config/ reads: each channel's variables, its pace and whether it is configured", () => {
		const none = loadConfig({}, CHANNELS);
		expect(none.channels.map(c => [c.name, c.configured, c.pace])).toEqual([
			["email", false, { perMinute: 30, burst: 5 }],
			["slack", false, { perMinute: 60, burst: 5 }],
			["discord", false, { perMinute: 30, burst: 5 }],
		]);
		expect(operatorChannels(none)).toEqual([]);
		expect(operatorVariables(none)).toBe("SLACK_WEBHOOK_URL, DISCORD_WEBHOOK_URL");
		const some = loadConfig({ SMTP_URL: "smtp://127.0.0.1:2525", DISCORD_WEBHOOK_URL: "http://127.0.0.1:9/d", NOTIFIER_DISCORD_PER_MINUTE: "0" }, CHANNELS);
		expect(operatorChannels(some)).toEqual(["discord"]);
		expect(some.channels.find(c => c.name === "discord")?.pace).toBeNull();
		expect([...transportsFor(some).keys()]).toEqual(["email", "discord"]);
		// No SMTP_URL: e-mail still has a transport, the local mailbox.
		expect([...transportsFor(none).keys()]).toEqual(["email"]);
	});

	it("takes a new channel with no change to config/: its variables, pace and operators' role come from its spec", () => {
		const c = loadConfig({ PAGER_URL: "http://127.0.0.1:9/p", NOTIFIER_PAGER_PER_MINUTE: "600", SLACK_WEBHOOK_URL: "http://127.0.0.1:9/s" }, [...CHANNELS, pager]);
		expect(c.channels.find(ch => ch.name === "pager")).toEqual({
			name: "pager",
			variables: ["PAGER_URL"],
			settings: { url: "http://127.0.0.1:9/p" },
			operators: true,
			configured: true,
			pace: { perMinute: 600, burst: 2 },
		});
		expect(operatorChannels(c)).toEqual(["slack", "pager"]);
		expect(() => loadConfig({ PAGER_URL: "http://127.0.0.1:9/p", NOTIFIER_PAGER_PER_MINUTE: "1" }, [pager])).toThrow(/NOTIFIER_PAGER_PER_MINUTE 1 is too slow/);
	});

	it("drives the notifier's channel filters", () => {
		const check = (action: string) =>
			new Validator().compile((NotifierService.actions![action] as { params: Record<string, unknown> }).params as never) as (o: unknown) => true | unknown[];
		for (const channel of [...CHANNEL_NAMES, "operators"]) expect([channel, check("list")({ channel })]).toEqual([channel, true]);
		for (const channel of CHANNEL_NAMES) expect([channel, check("resendFailed")({ channel })]).toEqual([channel, true]);
		expect(check("list")({ channel: "pager" })).not.toBe(true);
		expect(check("resendFailed")({ channel: "operators" })).not.toBe(true);
	});

	it("is the only place that names a chat channel or its variables in code", () => {
		const named = filesUnder("services", "lib", "mixins", "config", "contracts", "repl", "public")
			.filter(f => /\.(ts|js)$/.test(f) && !f.includes(join("services", "notifier", "transports") + "/"))
			.filter(f => /["'](slack|discord)["']|(SLACK|DISCORD)_WEBHOOK_URL["']|NOTIFIER_(EMAIL|SLACK|DISCORD)_/.test(readFileSync(f, "utf8")));
		expect(named).toEqual([]);
	});
});
