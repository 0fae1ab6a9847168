import http from "node:http";
import type { AddressInfo } from "node:net";
import { track, untrack } from "./resources";

export interface Hook {
	path: string;
	body: any;
	at: number;
	status: number;
}

/**
 * A local HTTP server standing in for Slack's and Discord's webhooks: records every POST (path,
 * JSON body, time, the status it answered) and answers 204, or what `answerNext` scripted
 * (e.g. a 429 with Retry-After), in order, per path.
 */
export class TestWebhooks {
	readonly hooks: Hook[] = [];
	private readonly scripted = new Map<string, { status: number; headers?: Record<string, string>; body?: string }[]>();
	private server!: http.Server;
	private readonly key = {};
	port = 0;

	static async start(): Promise<TestWebhooks> {
		const w = new TestWebhooks();
		w.server = http.createServer((req, res) => {
			const chunks: Buffer[] = [];
			req.on("data", c => chunks.push(c));
			req.on("end", () => {
				const path = req.url ?? "/";
				const next = w.scripted.get(path)?.shift() ?? { status: 204 };
				let body: unknown = null;
				try {
					body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
				} catch {
					body = Buffer.concat(chunks).toString("utf8");
				}
				w.hooks.push({ path, body, at: Date.now(), status: next.status });
				res.writeHead(next.status, next.headers ?? {});
				res.end(next.body ?? "");
			});
		});
		await new Promise<void>(resolve => w.server.listen(0, "127.0.0.1", () => resolve()));
		w.port = (w.server.address() as AddressInfo).port;
		track(w.key, { name: `webhooks :${w.port}`, close: () => w.stop() });
		return w;
	}

	url(path: string): string {
		return `http://127.0.0.1:${this.port}${path}`;
	}

	on(path: string): Hook[] {
		return this.hooks.filter(h => h.path === path);
	}

	answerNext(path: string, answer: { status: number; headers?: Record<string, string>; body?: string }): void {
		const list = this.scripted.get(path) ?? [];
		list.push(answer);
		this.scripted.set(path, list);
	}

	async stop(): Promise<void> {
		this.server.closeAllConnections();
		await new Promise<void>(resolve => this.server.close(() => resolve()));
		untrack(this.key);
	}
}
