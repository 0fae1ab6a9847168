import type { Middleware, ServiceBroker } from "moleculer";
import type { Config } from "../config";
import { NOTIFICATIONS_CHANNEL } from "../contracts";
import { LocalLogAdapter } from "./local-channel";

/**
 * The durable channel the notifier's messages travel on: @moleculer/channels on NATS JetStream
 * when a TRANSPORTER is set, its local (Moleculer event) adapter in a single process. Every node
 * gets the middleware, since any node may publish.
 *
 * Facts of @moleculer/channels 0.1.8's NATS adapter this file designs around:
 * - a publish to a subject with no stream fails, and the stream is only made when a consumer
 *   subscribes: so every node makes the stream when it connects (a message published before any
 *   notifier ever ran is kept, and delivered when one starts);
 * - its consumers default to deliver_policy "new", which would skip those messages: "all" here;
 * - two nodes subscribing one durable group at once on a fresh stream can fail with "consumer
 *   name already in use": subscribe is retried (the second attempt binds to the consumer made);
 * - it publishes nothing before `connect`, which runs after the services started (a request
 *   served in between would fail): publish waits for the connection a few seconds;
 * - a failed handler is NAKed and redelivered at once, and dropped after `maxRetries`
 *   deliveries: the notifier's handler only writes the delivery log, NAKs with a delay itself on
 *   a database failure, and maxRetries is set so high that nothing is ever dropped;
 * - stream settings are not updated after the stream exists (change them with `nats stream edit`).
 */

/** The JetStream stream of a namespace's channel (the adapter's own naming: dots become underscores). */
export const streamNameOf = (namespace: string) => (namespace ? `${namespace}.${NOTIFICATIONS_CHANNEL}` : NOTIFICATIONS_CHANNEL).split(".").join("_");

const NANOS_PER_MS = 1_000_000;
const PUBLISH_WAIT_MS = 5_000;

function natsAdapter(config: Config): unknown {
	const NatsAdapter: any = require("@moleculer/channels/src/adapters/nats");

	class StoreNatsAdapter extends NatsAdapter {
		declare connected: boolean;
		declare opts: any;
		declare logger: any;
		private readyWaiters: (() => void)[] = [];

		constructor(opts: object) {
			super(opts);
		}

		async connect() {
			await super.connect();
			// The stream exists from the first node on: publishes never fail for want of a consumer.
			const subject = this.addPrefixTopic(NOTIFICATIONS_CHANNEL);
			await this.createStream(subject.split(".").join("_"), [subject], {});
			for (const wake of this.readyWaiters.splice(0)) wake();
		}

		async subscribe(chan: { id: string }, svc: unknown) {
			for (let attempt = 1; ; attempt++) {
				try {
					return await super.subscribe(chan, svc);
				} catch (err) {
					const raced = /already in use|already exists/i.test((err as Error).message ?? "");
					if (!raced || attempt >= 10) throw err;
					this.logger.info(`Another node made the consumer first (${(err as Error).message}); binding to it.`);
					this.stopChannelActiveMessages(chan.id);
					await new Promise(r => setTimeout(r, 50 * attempt + Math.random() * 100));
				}
			}
		}

		async publish(channelName: string, payload: unknown, opts: object = {}) {
			if (!this.connected && !this.stopping)
				await new Promise<void>(resolve => {
					const timer = setTimeout(resolve, PUBLISH_WAIT_MS);
					this.readyWaiters.push(() => {
						clearTimeout(timer);
						resolve();
					});
				});
			if (this.stopping) throw new Error("the channel adapter is stopping: message not published");
			return super.publish(channelName, payload, opts);
		}
	}

	const retentionMs = config.notifier.retentionDays * 86_400_000;
	return new StoreNatsAdapter({
		maxInFlight: config.notifier.maxInFlight,
		// Deliveries, not tries: the handler never fails for a message's own sake, so never drop one.
		maxRetries: 1_000_000,
		nats: {
			// No `url`: the adapter would keep only each URL's host and drop the login ("Authorization
			// Violation" on a NATS with auth). Servers and login go to nats.js as they are.
			connectionOptions: { ...config.nats, maxReconnectAttempts: -1, name: `${config.nodeId}-channels` },
			streamConfig: {
				storage: "file",
				retention: "limits",
				// Made with this many copies; an existing stream keeps its own (raise it with `nats stream edit --replicas`).
				num_replicas: config.notifier.streamReplicas,
				// Kept no longer than the delivery log keeps its rows, so a redelivery always finds its row.
				max_age: retentionMs * NANOS_PER_MS,
				// Publishes carry the message's dedupeKey as Nats-Msg-Id: a repeat within this window is dropped by the server.
				duplicate_window: 2 * 60_000 * NANOS_PER_MS,
			},
			consumerOptions: { config: { deliver_policy: "all", ack_policy: "explicit", ack_wait: 30_000 * NANOS_PER_MS } },
		},
	});
}

/** The channels middleware for a broker built from `config`. */
export function channelsMiddleware(config: Config): Middleware {
	const ChannelsMiddleware = require("@moleculer/channels").Middleware;
	const adapter = config.nats
		? natsAdapter(config)
		: // The local adapter: a publish returns once the message is in the delivery log (lib/local-channel.ts).
			new LocalLogAdapter({ maxInFlight: config.notifier.maxInFlight, maxRetries: 0 });
	return ChannelsMiddleware({ adapter, context: false });
}

export interface ChannelBroker extends ServiceBroker {
	sendToChannel(name: string, payload: unknown, opts?: Record<string, unknown>): Promise<void>;
	channelAdapter: {
		manager?: { consumers: { info(stream: string, consumer: string): Promise<{ num_pending: number; num_ack_pending: number }> } };
		connected?: boolean;
	};
}
