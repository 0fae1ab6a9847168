import { ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { ServiceBroker, ServiceSchema } from "moleculer";
import { loadConfig } from "../../config";
import { bareBroker, serviceSchemas } from "../../broker";
import { CHANNELS } from "../../services/notifier/transports";
import { MessageBatch, MessageBody, NOTIFICATIONS_CHANNEL } from "../../contracts";
import type { ChannelBroker } from "../../lib/channels";
import { deleteStream } from "./jetstream";
import { track, untrack } from "./resources";

export const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
export const TEST_SECRET = "test-secret-of-at-least-32-characters!!";

/** A NAMESPACE per test: Moleculer subjects on NATS and Redis keys of one test never meet another's. */
export function freshNamespace(label = "t"): string {
	const namespace = `${label}-${process.pid}-${randomBytes(4).toString("hex")}`;
	// Every node of a namespace makes its notifications stream on the shared NATS: gone after the file.
	(globalThis as { __afterFile?: (() => Promise<void>)[] }).__afterFile?.push(() => deleteStream(namespace));
	return namespace;
}

export interface StoreNode {
	broker: ServiceBroker;
	/** http://127.0.0.1:port of its gateway, when it runs `api`. */
	url: string;
	/** Message bodies this node's services published to the notifier (in publish order). */
	messages: MessageBody[];
	stop(): Promise<void>;
}

/**
 * Starts one store node inside the test process, configured from `env` exactly as
 * `npm start` would be (PORT defaults to 0 = any free port, METRICS_PORT to 0 = no listener,
 * NOTIFIER_EMAIL_PER_MINUTE to 0 = no e-mail rate).
 */
export async function startNode(
	env: Record<string, string | undefined>,
	extend: Record<string, Partial<ServiceSchema<any, any>>> = {}
): Promise<StoreNode> {
	// E-mail at the test SMTP server's own speed unless a test sets the pace (the Gmail-suited default
	// would make a test's thousand mails take half an hour): test/integration/notifier-pace.test.ts does.
	// The shared test NATS takes anyone (it is on loopback, for tests only); a test of the refusal passes NATS_ALLOW_ANONYMOUS: "".
	const config = loadConfig({ PORT: "0", METRICS_PORT: "0", LOG_LEVEL: "warn", NOTIFIER_EMAIL_PER_MINUTE: "0", NATS_ALLOW_ANONYMOUS: "true", ...env }, CHANNELS);
	const schemas = serviceSchemas(config);
	const broker = bareBroker(config, { skipProcessEventRegistration: true });
	// `extend` adds a mixin to a named service: the extension is the schema, the service its first
	// mixin, so the extension's methods win and its `started` runs after the service's own.
	for (const { name, schema } of schemas) {
		const ext = extend[name];
		broker.createService(ext ? { ...ext, name, mixins: [schema, ...(ext.mixins ?? [])] } : schema);
	}
	const messages: MessageBody[] = [];
	// Sees what this node's services hand the notifier, as they hand it: every publish on the
	// notifications channel, before it leaves the node (what arrives is the notifier tests' business).
	const channels = broker as ChannelBroker;
	const publish = channels.sendToChannel.bind(broker);
	channels.sendToChannel = (name: string, payload: unknown, opts?: Record<string, unknown>) => {
		if (name === NOTIFICATIONS_CHANNEL) messages.push(...(payload as MessageBatch).messages);
		return publish(name, payload, opts);
	};
	const key = {};
	track(key, { name: `broker ${broker.nodeID}`, close: () => broker.stop() });
	try {
		await broker.start();
	} catch (err) {
		await broker.stop().catch(() => undefined);
		untrack(key);
		throw err;
	}
	const api = broker.getLocalService("api") as unknown as { server?: { address(): AddressInfo | null } } | undefined;
	const address = api?.server?.address();
	return {
		broker,
		url: address ? `http://127.0.0.1:${address.port}` : "",
		messages,
		async stop() {
			await stopWithin(broker, STOP_WITHIN_MS);
			untrack(key);
		},
	};
}

/** A node stops in a second or two here; one still stopping after this long is a hang to name. */
const STOP_WITHIN_MS = 20_000;

/**
 * broker.stop(), bounded: a node that hangs while stopping fails with its name and the services
 * whose `stopped` had not returned (none listed: the hang is after them, in the transporter, the
 * cacher or a middleware), instead of running into the test's timeout and leaking a broker
 * started after it. The node stays tracked, so the file's leak check reports it too.
 */
async function stopWithin(broker: ServiceBroker, ms: number): Promise<void> {
	type Stoppable = { fullName: string; _stop(): Promise<void> };
	const services = broker.services as unknown as Stoppable[];
	const notStopped = new Set(services.map(s => s.fullName));
	for (const svc of services) {
		const stop = svc._stop;
		svc._stop = function (this: Stoppable) {
			return Promise.resolve(stop.call(this)).finally(() => notStopped.delete(svc.fullName));
		};
	}
	let timer: NodeJS.Timeout | undefined;
	const deadline = new Promise<never>((_, reject) => {
		timer = setTimeout(() => {
			const which = notStopped.size ? `services still stopping: ${[...notStopped].join(", ")}` : "every service stopped; the hang is in the transporter, cacher or a middleware";
			reject(new Error(`node ${broker.nodeID} did not stop within ${ms / 1000} s (${which})`));
		}, ms);
	});
	try {
		await Promise.race([broker.stop(), deadline]);
	} finally {
		clearTimeout(timer);
	}
}

export interface ChildNode {
	proc: ChildProcess;
	output(): string;
	exited: Promise<number | null>;
	stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const SERVER = path.join(__dirname, "..", "..", "dist", "server.js");

/** Starts `node dist/server.js` as `npm start` does, with the environment given (and the test NATS's opt-out below). */
export function spawnNode(env: Record<string, string>, args: string[] = []): ChildNode {
	const proc = spawn(process.execPath, [SERVER, ...args], {
		// NATS_ALLOW_ANONYMOUS: the shared test NATS on loopback takes anyone; a test can pass "" to see the refusal.
		// NOTIFIER_EMAIL_PER_MINUTE 0: e-mail at the test SMTP server's speed, as startNode's (a test sets a pace to see one).
		env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", NATS_ALLOW_ANONYMOUS: "true", NOTIFIER_EMAIL_PER_MINUTE: "0", ...env },
		stdio: ["pipe", "pipe", "pipe"],
	});
	let out = "";
	proc.stdout!.on("data", d => (out += d));
	proc.stderr!.on("data", d => (out += d));
	const exited = new Promise<number | null>(resolve => proc.once("exit", code => resolve(code)));
	const key = {};
	const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
		if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
		const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
		const code = await exited;
		clearTimeout(timer);
		untrack(key);
		return code;
	};
	track(key, { name: `child ${proc.pid}`, close: () => stop("SIGKILL").then(() => undefined) });
	exited.then(() => untrack(key));
	return { proc, output: () => out, exited, stop };
}

/** Polls `probe` until it returns true, or fails with `what` after `ms`. */
export async function waitFor(what: string, probe: () => Promise<boolean> | boolean, ms = 20_000): Promise<void> {
	const deadline = Date.now() + ms;
	let last: unknown;
	while (Date.now() < deadline) {
		try {
			if (await probe()) return;
		} catch (err) {
			last = err;
		}
		await new Promise(r => setTimeout(r, 100));
	}
	throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}
