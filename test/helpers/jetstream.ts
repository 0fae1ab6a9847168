import { connect } from "nats";
import { streamNameOf } from "../../lib/channels";

const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";

/** nats.js options for a nats:// URL, its login included (nats.js takes `servers` as host:port only). */
export function natsOptions(url: string): { servers: string; user?: string; pass?: string } {
	const u = new URL(url);
	return { servers: u.host, ...(u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : {}) };
}

/** The notifier's JetStream consumer of a namespace, as the server reports it. */
export async function consumerInfo(namespace: string): Promise<{ num_pending: number; num_ack_pending: number; num_redelivered: number } | null> {
	const nc = await connect(natsOptions(NATS_URL));
	try {
		const jsm = await nc.jetstreamManager();
		return await jsm.consumers.info(streamNameOf(namespace), `${namespace}_notifier`).catch(() => null);
	} finally {
		await nc.close();
	}
}

/** Deletes a test namespace's stream (and so its consumer) from the shared NATS server. */
export async function deleteStream(namespace: string): Promise<void> {
	const nc = await connect(natsOptions(NATS_URL));
	try {
		const jsm = await nc.jetstreamManager();
		await jsm.streams.delete(streamNameOf(namespace)).catch(() => undefined);
	} finally {
		await nc.close();
	}
}
