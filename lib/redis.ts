import Redis from "ioredis";

/** One ioredis connection per broker and URL, shared by that broker's services. */
const clients = new WeakMap<object, { redis: Redis; users: number }>();

export function acquireRedis(owner: object, url: string): Redis {
	let entry = clients.get(owner);
	if (!entry) {
		entry = { redis: new Redis(url, { maxRetriesPerRequest: 2, enableAutoPipelining: true }), users: 0 };
		clients.set(owner, entry);
	}
	entry.users += 1;
	return entry.redis;
}

export async function releaseRedis(owner: object): Promise<void> {
	const entry = clients.get(owner);
	if (!entry) return;
	entry.users -= 1;
	if (entry.users <= 0) {
		clients.delete(owner);
		await entry.redis.quit().catch(() => entry.redis.disconnect());
	}
}

/** Redis keys of one cluster (NAMESPACE) never meet another's. */
export function keyPrefix(namespace: string): string {
	return `dopamine:${namespace || "default"}:`;
}
