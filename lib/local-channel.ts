import { randomUUID } from "node:crypto";

/**
 * The notifications channel in a single process (no TRANSPORTER): @moleculer/channels' Fake
 * adapter, with one change. Its `publish` emits a Moleculer event and returns at once, so a
 * message whose publish had returned could still be lost if the process stopped before the
 * notifier's intake wrote it to the delivery log (and a failed intake was only logged). Here
 * `publish` hands the message to this process's consumers itself and returns when their handler
 * has: once a publish resolved the message is a row in the delivery log and survives a restart,
 * and a publish whose intake failed rejects, so the allocator's outbox keeps the message for its
 * next drain. With no consumer in this process it falls back to the event, as the Fake adapter does.
 * A consumer takes at most `maxInFlight` messages at once, as on JetStream.
 */
const FakeAdapter: any = require("@moleculer/channels/src/adapters/fake");

interface LocalChannel {
	id: string;
	name: string;
	group: string;
}

export class LocalLogAdapter extends FakeAdapter {
	constructor(opts: { maxInFlight: number; maxRetries: number }) {
		super(opts);
	}

	private readonly consumers = new Map<string, LocalChannel[]>();
	/** Per consumer: messages in its handler now, and publishes waiting for room (maxInFlight). */
	private readonly inFlight = new Map<string, { active: number; waiting: (() => void)[] }>();

	async subscribe(chan: LocalChannel, svc: unknown): Promise<void> {
		await super.subscribe(chan, svc);
		this.consumers.set(chan.name, [...(this.consumers.get(chan.name) ?? []).filter(c => c.id !== chan.id), chan]);
	}

	async unsubscribe(chan: LocalChannel): Promise<void> {
		this.consumers.set(chan.name, (this.consumers.get(chan.name) ?? []).filter(c => c.id !== chan.id));
		await super.unsubscribe(chan);
	}

	async publish(channelName: string, payload: unknown, opts: { headers?: Record<string, string> } = {}): Promise<void> {
		const local = this.consumers.get(channelName) ?? [];
		if (local.length === 0) return super.publish(channelName, payload, opts);
		// Every group gets the message once, as on JetStream; the publish waits for all of them.
		await Promise.all(local.map(chan => this.withRoom(chan, () => this.processMessage(chan, { id: randomUUID(), params: { payload, headers: opts.headers } }))));
	}

	/**
	 * At most `maxInFlight` messages in a consumer's handler at once, as the Fake adapter's bulkhead
	 * and JetStream's max_ack_pending give: a burst of publishes waits its turn instead of taking
	 * every database connection for the intake.
	 */
	private async withRoom<T>(chan: LocalChannel & { maxInFlight?: number }, work: () => Promise<T>): Promise<T> {
		const limit = chan.maxInFlight ?? Infinity;
		let slot = this.inFlight.get(chan.id);
		if (!slot) this.inFlight.set(chan.id, (slot = { active: 0, waiting: [] }));
		while (slot.active >= limit) await new Promise<void>(resolve => slot!.waiting.push(resolve));
		slot.active++;
		try {
			return await work();
		} finally {
			slot.active--;
			slot.waiting.shift()?.();
		}
	}
}
