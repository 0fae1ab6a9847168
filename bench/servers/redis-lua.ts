import http from "node:http";
import Redis from "ioredis";

/**
 * The other usual build: a Redis Lua script decrements the counter and records the buyer. Fast,
 * but nothing is durable: a Redis restart forgets every grant, and no order row exists.
 */
const port = Number(process.env.PORT ?? 3902);
const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const key = process.env.BENCH_KEY ?? "bench:naive";
redis.defineCommand("claim", {
	numberOfKeys: 2,
	lua: `if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return -1 end
	      local left = tonumber(redis.call('GET', KEYS[1]) or '0')
	      if left <= 0 then return 0 end
	      redis.call('DECR', KEYS[1]); redis.call('SADD', KEYS[2], ARGV[1]); return 1`,
});

http
	.createServer((req, res) => {
		req.resume();
		(redis as any).claim(`${key}:stock`, `${key}:buyers`, String(req.headers["x-buyer"] ?? "0")).then((r: number) => {
			const status = r === 1 ? 201 : 409;
			res.writeHead(status, { "Content-Type": "application/json" });
			res.end(r === 1 ? '{"ok":true}' : '{"type":"SOLD_OUT"}');
		});
	})
	.listen(port, "127.0.0.1");
