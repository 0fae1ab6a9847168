import fs from "node:fs";
import path from "node:path";
import { loadConfig } from "../../config";
import { CHANNELS } from "../../services/notifier/transports";

/**
 * docs/configuration.md and config/ agree: every variable config/ reads is in the table, and every
 * variable in the table is read. config/ reads the notification channels' variables from the
 * transports' registry's specs, as server.ts hands them over, so they count too. What is read is recorded, not guessed: loadConfig runs on an
 * environment that notes every key asked for, in the shapes that reach every branch (single
 * process, a cluster node with its NATS login in the URL, by user and password, by a password
 * file, anonymous; Agenda on MongoDB; a configured admin).
 */
const TABLE = path.join(__dirname, "..", "..", "docs", "configuration.md");
const SECRET = "a-secret-of-at-least-thirty-two-bytes!!";

function documented(): Set<string> {
	const names = new Set<string>();
	for (const line of fs.readFileSync(TABLE, "utf8").split("\n")) {
		if (!line.startsWith("| `")) continue;
		const first = line.split("|")[1];
		for (const m of first.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) names.add(m[1]);
	}
	return names;
}

function readBy(env: Record<string, string>): Set<string> {
	const read = new Set<string>();
	const recording = new Proxy(env, {
		get(target, key) {
			if (typeof key === "string" && /^[A-Z][A-Z0-9_]+$/.test(key)) read.add(key);
			return target[key as string];
		},
		has(target, key) {
			if (typeof key === "string" && /^[A-Z][A-Z0-9_]+$/.test(key)) read.add(key);
			return key in target;
		},
	});
	loadConfig(recording, CHANNELS);
	return read;
}

const passwordFile = path.join(__dirname, "config-docs.test.ts"); // any readable file will do
const shapes: Record<string, string>[] = [
	{},
	{ TRANSPORTER: "nats://store:pw@127.0.0.1:4222", JWT_SECRET: SECRET },
	{ TRANSPORTER: "nats://127.0.0.1:4222", JWT_SECRET: SECRET, NATS_USER: "store", NATS_PASSWORD: "pw" },
	{ TRANSPORTER: "nats://127.0.0.1:4222", JWT_SECRET: SECRET, NATS_USER: "store", NATS_PASSWORD_FILE: passwordFile },
	{ TRANSPORTER: "nats://127.0.0.1:4222", JWT_SECRET: SECRET, NATS_ALLOW_ANONYMOUS: "true" },
	{ AGENDA_BACKEND: "mongo", MONGO_URL: "mongodb://127.0.0.1:27017/agenda" },
	{ ADMIN_LOGIN_ID: "boss", ADMIN_PASSWORD: "boss-password-1", ADMIN_EMAIL: "boss@example.com" },
];

test("every variable config/ reads is in docs/configuration.md, and every one there is read", () => {
	const read = new Set<string>();
	for (const env of shapes) for (const k of readBy({ ...env })) read.add(k);
	const docs = documented();
	expect([...read].filter(k => !docs.has(k)).sort()).toEqual([]);
	expect([...docs].filter(k => !read.has(k)).sort()).toEqual([]);
	// The recording works: it saw the obvious ones.
	expect(read.has("DATABASE_URL") && read.has("NATS_PASSWORD_FILE") && read.has("MONGO_URL")).toBe(true);
});
