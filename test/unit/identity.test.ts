import { ServiceBroker } from "moleculer";
import { loadConfig } from "../../config";
import { identityMiddleware, signFlag, signIdentity, verifyFlag, verifyIdentity } from "../../lib/identity";
import { CHANNELS } from "../../services/notifier/transports";

/** Issue 22, point 1: the signed identity and flag, and the middleware's rules, without a network. */
const SECRET = "unit-node-secret-of-at-least-32-bytes!!";

describe("signed identities", () => {
	it("verify only untampered, unexpired identities signed with the secret", () => {
		const now = 1_700_000_000_000;
		const id = signIdentity(SECRET, { id: "12", role: "admin", iat: 5 }, now);
		expect(verifyIdentity(SECRET, id, now + 1000)).toEqual({ id: "12", role: "admin", iat: 5 });
		expect(verifyIdentity("another-secret-of-at-least-32-bytes!!!", id, now)).toBeNull();
		expect(verifyIdentity(SECRET, id, now + 60_000)).toBeNull();
		const [v, body, mac] = id.split(".");
		const promoted = Buffer.from(JSON.stringify({ sub: "12", role: "admin", exp: now + 10 ** 9 })).toString("base64url");
		expect(verifyIdentity(SECRET, `${v}.${promoted}.${mac}`, now)).toBeNull();
		for (const junk of [undefined, null, 42, "", "i1..", `${v}.${body}`, { id: "1", role: "admin" }]) expect(verifyIdentity(SECRET, junk, now)).toBeNull();
	});

	it("flags verify when signed, recent and within the lease", () => {
		const flag = { productId: "3", epoch: 2, version: 7, soldOut: true, leaseMs: 2000 };
		const now = 1_700_000_000_000;
		expect(verifyFlag(SECRET, signFlag(SECRET, flag, now), 2000, now + 500)).toBe(true);
		expect(verifyFlag(SECRET, flag, 2000, now)).toBe(false);
		expect(verifyFlag(SECRET, { ...signFlag(SECRET, flag, now), epoch: 2 ** 40 }, 2000, now)).toBe(false);
		expect(verifyFlag(SECRET, signFlag(SECRET, flag, now), 2000, now + 11_000)).toBe(false);
		expect(verifyFlag(SECRET, signFlag(SECRET, { ...flag, leaseMs: 10 ** 9 }, now), 2000, now)).toBe(false);
	});
});

describe("identityMiddleware", () => {
	const config = { ...loadConfig({ JWT_SECRET: "j".repeat(40), NODE_SECRET: SECRET }, CHANNELS) };
	let broker: ServiceBroker;
	afterEach(async () => {
		await broker?.stop();
	});

	it("checks declared auth, and hides meta.user from actions that declare none", async () => {
		broker = new ServiceBroker({ logger: false, middlewares: [identityMiddleware(config)] });
		broker.createService({
			name: "t",
			actions: {
				admin: { auth: "admin", handler: (ctx: any) => ctx.meta.user },
				mine: { auth: "user", handler: (ctx: any) => ctx.meta.user.id },
				open: { handler: (ctx: any) => ctx.meta.user ?? null },
			},
		} as any);
		await broker.start();
		const as = (role: "buyer" | "admin") => ({ meta: { identity: signIdentity(SECRET, { id: "9", role }) } });
		await expect(broker.call("t.admin", {}, as("admin"))).resolves.toEqual({ id: "9", role: "admin" });
		await expect(broker.call("t.admin", {}, as("buyer"))).rejects.toMatchObject({ code: 403 });
		await expect(broker.call("t.admin", {}, { meta: { user: { id: "9", role: "admin" } } })).rejects.toMatchObject({ code: 401 });
		await expect(broker.call("t.mine", {}, as("buyer"))).resolves.toBe("9");
		await expect(broker.call("t.open", {}, { meta: { user: { id: "9", role: "admin" } } })).resolves.toBeNull();
	});

	it("refuses an action that has both auth and cache", async () => {
		broker = new ServiceBroker({ logger: false, cacher: "Memory", middlewares: [identityMiddleware(config)] });
		expect(() => broker.createService({ name: "c", actions: { x: { auth: "admin", cache: true, handler: () => 1 } } } as any)).toThrow(/must not be cached/);
	});
});
