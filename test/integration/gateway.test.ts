import nodeHttp from "node:http";
import { Errors } from "moleculer";
import { errorBody } from "../../services/api/replies";
import { conflict, unavailable } from "../../lib/errors";
import { api, request } from "../helpers/http";
import { dropDatabase, freshDatabaseUrl } from "../helpers/db";
import { startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";

const DB = freshDatabaseUrl("gateway");
let node: StoreNode;
let http: ReturnType<typeof api>;

beforeAll(async () => {
	node = await startNode({ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, BODY_LIMIT: "8kb" });
	http = api(node.url);
});
afterAll(async () => {
	await node?.stop();
	await dropDatabase(DB);
});

const errorShape = { name: expect.any(String), message: expect.any(String), code: expect.any(Number), type: expect.any(String) };

describe("gateway", () => {
	it("reports readiness on /api/health", async () => {
		const r = await http.get("/api/health");
		expect(r.status).toBe(200);
		expect(r.body).toEqual({ status: "ok" });
	});

	it("gives the server's clock on /api/time", async () => {
		const before = Date.now();
		const r = await http.get("/api/time");
		const after = Date.now();
		expect(r.status).toBe(200);
		const now = Date.parse(r.body.now);
		expect(r.body.now).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
		expect(now).toBeGreaterThanOrEqual(before - 5);
		expect(now).toBeLessThanOrEqual(after + 5);
	});

	it("serves Prometheus metrics on /metrics", async () => {
		await http.get("/api/products");
		const r = await fetch(`${node.url}/metrics`);
		expect(r.status).toBe(200);
		expect(r.headers.get("content-type")).toMatch(/text\/plain/);
		const text = await r.text();
		expect(text).toMatch(/^# TYPE moleculer_request_total counter$/m);
		expect(text).toMatch(/moleculer_request_total\{[^}]*action="products\.list"/);
	});

	it("answers 404 NOT_FOUND for unknown routes and methods", async () => {
		for (const [method, path] of [
			["GET", "/api/nope"],
			["GET", "/nope"],
			["POST", "/api/products"],
			["GET", "/api/admin/unknown"],
			["GET", "/api/users/list"],
			["GET", "/api/$node/list"],
		]) {
			const r = await request(node.url, method, path);
			expect([method, path, r.status]).toEqual([method, path, 404]);
			expect(r.body).toMatchObject({ ...errorShape, code: 404, type: "NOT_FOUND" });
		}
	});

	it("answers 400 INVALID_JSON for a garbage body", async () => {
		for (const body of ["{not json", '{"loginId": "x",}', "\u0000\u0001", "[1, 2"]) {
			const r = await request(node.url, "POST", "/api/auth/signup", { body });
			expect(r.status).toBe(400);
			expect(r.body).toEqual({ name: "BadRequestError", message: "The request body is not valid JSON", code: 400, type: "INVALID_JSON" });
		}
	});

	it("answers 400 INVALID_JSON for a bare JSON value where an object belongs", async () => {
		for (const body of ["42", '"text"', "null", "true"]) {
			const r = await request(node.url, "POST", "/api/auth/signup", { body });
			expect([body, r.status, r.body.type]).toEqual([body, 400, "INVALID_JSON"]);
		}
	});

	it("answers 422 for JSON that is not an object of the right fields", async () => {
		for (const body of ["[]", "{}", '{"loginId": {"$gt": ""}, "password": [], "email": 1}']) {
			const r = await request(node.url, "POST", "/api/auth/signup", { body });
			expect([body, r.status]).toEqual([body, 422]);
			expect(r.body.type).toBe("VALIDATION_ERROR");
		}
	});

	it("answers 413 PAYLOAD_TOO_LARGE for an oversized body and stays up", async () => {
		const r = await http.post("/api/auth/signup", { loginId: "big", password: "x".repeat(64 * 1024), email: "b@example.com" });
		expect(r.status).toBe(413);
		expect(r.body).toMatchObject({ ...errorShape, code: 413, type: "PAYLOAD_TOO_LARGE" });
		expect((await http.get("/api/health")).status).toBe(200);
	});

	it("never shows a stack trace or a hash in an error", async () => {
		const r = await http.post("/api/auth/login", { loginId: "nobody-at-all", password: "wrong-one" });
		expect(r.status).toBe(401);
		expect(r.text).not.toMatch(/at .+\.(js|ts):\d+|stack|scrypt\$/);
	});
});

describe("errorBody (what an error becomes on the wire)", () => {
	it("hides an unexpected error behind a plain 500", () => {
		const err = new Error("duplicate key value violates unique constraint \"users_pkey\" at /srv/x.js:1");
		const { status, body } = errorBody(err);
		expect(status).toBe(500);
		expect(body).toEqual({ name: "InternalServerError", message: "Something went wrong on our side", code: 500, type: "INTERNAL_ERROR" });
	});

	it("keeps the store's own errors with their type and data", () => {
		expect(errorBody(conflict("Sold out", "SOLD_OUT", { epoch: 3, seq: 9 }))).toEqual({
			status: 409,
			body: { name: "StoreClientError", message: "Sold out", code: 409, type: "SOLD_OUT", data: { epoch: 3, seq: 9 } },
		});
		expect(errorBody(unavailable("Busy", "BUSY", 2)).status).toBe(503);
	});

	it("drops echoed values and internals from validation errors", () => {
		const err = new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [
			{ type: "stringMin", field: "password", actual: "hunter2", message: "too short", nodeID: "n1", action: "users.signup" },
		] as any);
		expect(errorBody(err).body.data).toEqual([{ type: "stringMin", field: "password", message: "too short" }]);
	});
});

describe("a gateway that stops", () => {
	/** GET over a kept-alive agent, with the Connection header of the answer. */
	const get = (url: string, agent: nodeHttp.Agent) =>
		new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
			const req = nodeHttp.get(url, { agent }, res => {
				res.resume();
				res.on("end", () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
			});
			req.on("error", reject);
		});

	it("stops while clients keep their kept-alive connections busy with slow requests, and answers them 503, not 500", async () => {
		// Each product list takes 200 ms (a test hook, no cache), like a dashboard request waiting on
		// another node: the requests in flight when the node stops outlast server.close()'s one look
		// for idle connections, and each poller sends its next request on the same connection.
		const gw = await startNode(
			{ DATABASE_URL: DB, JWT_SECRET: TEST_SECRET, PRODUCT_CACHE_TTL_SECONDS: "0" },
			{ products: { hooks: { before: { list: () => new Promise(r => setTimeout(r, 200)) } } } }
		);
		const agent = new nodeHttp.Agent({ keepAlive: true, maxSockets: 4 });
		let stopCalledAt = Infinity;
		const afterStop: { status: number; connection: string | undefined }[] = [];
		let polling = true;
		let answered = 0;
		const poller = async () => {
			while (polling) {
				try {
					const r = await get(`${gw.url}/api/products`, agent);
					answered++;
					if (Date.now() >= stopCalledAt) afterStop.push(r);
				} catch {
					return; // refused or reset: the gateway is gone
				}
			}
		};
		const pollers = [poller(), poller(), poller(), poller()];
		try {
			await waitFor("the pollers' first answers", () => answered >= 8);
			stopCalledAt = Date.now();
			// Bounded by the helper at 20 s: before the fix, this never returned.
			await gw.stop();
			const tookMs = Date.now() - stopCalledAt;
			polling = false;
			await Promise.all(pollers);
			// The fault struck: requests were in flight while the node stopped. Each was answered, and
			// not with a 500: the database closed under it, and that is a moment to wait out (503).
			expect(afterStop.length).toBeGreaterThan(0);
			expect(afterStop.map(a => a.status).filter(s => s !== 200 && s !== 503)).toEqual([]);
			// A request timeout (5 s) is the longest a stuck request may hold the stop.
			expect(tookMs).toBeLessThan(15_000);
			// Its connections were closed, not kept for the pollers' next requests.
			await expect(get(`${gw.url}/api/products`, agent)).rejects.toThrow();
		} finally {
			polling = false;
			agent.destroy();
		}
	});
});
