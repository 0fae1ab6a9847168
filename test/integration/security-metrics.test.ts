import os from "node:os";
import type { AddressInfo } from "node:net";
import { freePort } from "../../bench/lib/store";
import { dropDatabase, freshDatabaseUrl } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET } from "../helpers/nodes";

/**
 * Issue 22, point 8: /metrics is not public. Without METRICS_TOKEN: the gateway serves it to a
 * client on loopback that came through no proxy, and the listener binds loopback; with it, both
 * want the token. Host details (hostname, OS user, home directory, addresses, MAC) are not reported.
 */
const DB = freshDatabaseUrl("secmetrics");
const TOKEN = "metrics-token-for-the-test-0123456789";
let plain: StoreNode;
let guarded: StoreNode;
let plainPort: number;
let guardedPort: number;

beforeAll(async () => {
	plainPort = await freePort();
	plain = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, NODE_ID: "metrics-plain", METRICS_PORT: String(plainPort), SERVICES: "api,products" });
	guardedPort = await freePort();
	guarded = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, NODE_ID: "metrics-guarded", METRICS_PORT: String(guardedPort), METRICS_TOKEN: TOKEN, SERVICES: "api,products" });
});
afterAll(async () => {
	await guarded?.stop();
	await plain?.stop();
	await dropDatabase(DB);
});

const listenerOf = (n: StoreNode) => (n.broker.metrics as unknown as { reporter: { server?: { address(): AddressInfo } }[] }).reporter[0].server!;
const macs = () => Object.values(os.networkInterfaces()).flat().map(i => i!.mac).filter(m => m && m !== "00:00:00:00:00:00");
const externalAddresses = () => Object.values(os.networkInterfaces()).flat().filter(i => i && !i.internal).map(i => i!.address);

describe("/metrics", () => {
	it("shows no host details", async () => {
		const text = await (await fetch(`${plain.url}/metrics`)).text();
		expect(text).toMatch(/moleculer_request_total/);
		expect(text).not.toMatch(/os_hostname|os_user_|os_network_|os_type|os_release|os_cpu_info|process_arguments/);
		const user = os.userInfo();
		for (const secret of [os.hostname(), user.homedir, ...macs(), ...externalAddresses()]) expect([secret, text.includes(secret)]).toEqual([secret, false]);
		expect(text).not.toMatch(new RegExp(`"${user.username}"`));
	});

	it("without METRICS_TOKEN: the gateway answers loopback clients not behind a proxy, and the listener binds loopback", async () => {
		expect((await fetch(`${plain.url}/metrics`)).status).toBe(200);
		const proxied = await fetch(`${plain.url}/metrics`, { headers: { "x-forwarded-for": "198.51.100.9" } });
		expect(proxied.status).toBe(403);
		expect(((await proxied.json()) as { type: string }).type).toBe("FORBIDDEN");
		expect(listenerOf(plain).address().address).toBe("127.0.0.1");
		expect((await fetch(`http://127.0.0.1:${plainPort}/metrics`)).status).toBe(200);
		// Not on the machine's other addresses.
		for (const address of externalAddresses().filter(a => !a.includes(":")))
			await expect(fetch(`http://${address}:${plainPort}/metrics`)).rejects.toThrow();
	});

	it("with METRICS_TOKEN: both want the token", async () => {
		expect((await fetch(`${guarded.url}/metrics`)).status).toBe(401);
		expect((await fetch(`${guarded.url}/metrics`, { headers: { authorization: "Bearer wrong-token-wrong-token" } })).status).toBe(401);
		const ok = await fetch(`${guarded.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
		expect(ok.status).toBe(200);
		expect(await ok.text()).toMatch(/moleculer_request_total/);
		expect((await fetch(`http://127.0.0.1:${guardedPort}/metrics`)).status).toBe(401);
		expect((await fetch(`http://127.0.0.1:${guardedPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
	});
});
