import { connect } from "nats";
import { streamNameOf } from "../../lib/channels";

const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";

/** The notifier's JetStream consumer of a namespace, as the server reports it. */
export async function consumerInfo(namespace: string): Promise<{ num_pending: number; num_ack_pending: number; num_redelivered: number } | null> {
	const nc = await connect({ servers: new URL(NATS_URL).host });
	try {
		const jsm = await nc.jetstreamManager();
		return await jsm.consumers.info(streamNameOf(namespace), `${namespace}_notifier`).catch(() => null);
	} finally {
		await nc.close();
	}
}

/** Deletes a test namespace's stream (and so its consumer) from the shared NATS server. */
export async function deleteStream(namespace: string): Promise<void> {
	const nc = await connect({ servers: new URL(NATS_URL).host });
	try {
		const jsm = await nc.jetstreamManager();
		await jsm.streams.delete(streamNameOf(namespace)).catch(() => undefined);
	} finally {
		await nc.close();
	}
}
