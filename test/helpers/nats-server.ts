import { ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { waitFor } from "./nodes";
import { track, untrack } from "./resources";

export const NATS_SERVER = process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";

import { freePort } from "../../ops/cluster/launcher";

export { freePort };

const listening = (port: number) =>
	new Promise<boolean>(resolve => {
		const s = net.connect(port, "127.0.0.1", () => {
			s.destroy();
			resolve(true);
		});
		s.on("error", () => resolve(false));
	});

/**
 * A private nats-server with JetStream that requires a user and password, on a port of its own
 * (never the shared 4222: a test that kills it must not touch another engineer's server).
 * kill() is kill -9; start() brings it back on the same port with the same store.
 */
export class AuthNats {
	private proc: ChildProcess | null = null;
	private readonly dir = mkdtempSync(path.join(os.tmpdir(), "auth-nats-"));
	port = 0;
	private readonly key = {};

	constructor(
		readonly user = "store",
		readonly password = "s3cret-" + Math.random().toString(36).slice(2)
	) {}

	async start(): Promise<void> {
		if (!this.port) this.port = await freePort();
		const conf = path.join(this.dir, "nats.conf");
		writeFileSync(
			conf,
			[
				`listen: 127.0.0.1:${this.port}`,
				`jetstream { store_dir: ${JSON.stringify(path.join(this.dir, "js"))} }`,
				// The same file the launcher writes (ops/cluster): one user, no anonymous connection.
				`authorization { users: [ { user: ${JSON.stringify(this.user)}, password: ${JSON.stringify(this.password)} } ] }`,
			].join("\n")
		);
		const proc = spawn(NATS_SERVER, ["-c", conf], { stdio: "ignore" });
		this.proc = proc;
		track(this.key, { name: `nats-server ${proc.pid}`, close: () => this.kill() });
		await waitFor("nats-server to listen", () => listening(this.port), 10_000);
	}

	async kill(): Promise<void> {
		const proc = this.proc;
		this.proc = null;
		if (!proc || proc.exitCode !== null || proc.signalCode !== null) return untrack(this.key);
		const exited = new Promise(r => proc.once("exit", r));
		proc.kill("SIGKILL");
		await exited;
		untrack(this.key);
	}

	/** With the login written in the URL, as an operator writes TRANSPORTER. */
	get url(): string {
		return `nats://${encodeURIComponent(this.user)}:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}`;
	}

	get anonymousUrl(): string {
		return `nats://127.0.0.1:${this.port}`;
	}

	cleanup(): void {
		rmSync(this.dir, { recursive: true, force: true });
	}
}
