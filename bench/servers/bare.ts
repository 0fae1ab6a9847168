import cluster from "node:cluster";
import http from "node:http";

/** The ceiling: a bare Node HTTP server answering a fixed JSON. WORKERS=2 uses node:cluster. */
const port = Number(process.env.PORT ?? 3900);
const workers = Number(process.env.WORKERS ?? 1);
const body = JSON.stringify({ name: "ClaimError", message: "Sold out", code: 409, type: "SOLD_OUT" });

if (workers > 1 && cluster.isPrimary) {
	for (let i = 0; i < workers; i++) cluster.fork();
} else {
	http
		.createServer((req, res) => {
			req.resume();
			res.writeHead(409, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(body) });
			res.end(body);
		})
		.listen(port, "127.0.0.1");
}
