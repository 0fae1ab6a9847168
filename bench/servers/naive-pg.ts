import http from "node:http";
import { Pool } from "pg";

/**
 * What teams usually build: per request, a conditional UPDATE of a stock counter and an INSERT
 * of the order, in one transaction, on PostgreSQL. Correct, but every buyer queues on one hot row.
 */
const port = Number(process.env.PORT ?? 3901);
const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 32 });

async function claim(buyer: string): Promise<number> {
	const c = await pool.connect();
	try {
		await c.query("BEGIN");
		const r = await c.query("UPDATE naive_stock SET remaining = remaining - 1 WHERE id = 1 AND remaining > 0 RETURNING remaining");
		if (r.rowCount === 0) {
			await c.query("ROLLBACK");
			return 409;
		}
		await c.query("INSERT INTO naive_orders (buyer) VALUES ($1)", [buyer]);
		await c.query("COMMIT");
		return 201;
	} catch {
		await c.query("ROLLBACK").catch(() => undefined);
		return 500;
	} finally {
		c.release();
	}
}

http
	.createServer((req, res) => {
		req.resume();
		claim(String(req.headers["x-buyer"] ?? "0")).then(status => {
			const body = status === 201 ? '{"ok":true}' : '{"type":"SOLD_OUT"}';
			res.writeHead(status, { "Content-Type": "application/json" });
			res.end(body);
		});
	})
	.listen(port, "127.0.0.1");
