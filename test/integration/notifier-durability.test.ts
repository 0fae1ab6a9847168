import { MessageBody } from "../../contracts";
import { publishMessages } from "../../mixins/notify.mixin";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { consumerInfo, deleteStream } from "../helpers/jetstream";
import { freshNamespace, NATS_URL, spawnNode, startNode, StoreNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { countBy, sleep } from "../helpers/sale";
import { TestSmtp } from "../helpers/smtp";

/**
 * Nothing lost, nothing sent twice: a notifier stopped while messages pile up on the stream, one
 * killed with SIGKILL while its SMTP sends are in flight, and two sharing the work. "Sent" is
 * counted where it counts, at the SMTP server (a message is sent when the server answered 250).
 */
const DB = freshDatabaseUrl("notifier_dur");
let smtp: TestSmtp;
const namespaces: string[] = [];

const base = (ns: string) => ({
	DATABASE_URL: DB,
	JWT_SECRET: TEST_SECRET,
	TRANSPORTER: NATS_URL,
	NAMESPACE: ns,
	SMTP_URL: smtp.url,
	NOTIFIER_POLL_MS: "200",
	LOG_LEVEL: "warn",
});
const fresh = (label: string) => {
	const ns = freshNamespace(label);
	namespaces.push(ns);
	return ns;
};
const bodies = (prefix: string, n: number, from = 1): MessageBody[] =>
	Array.from({ length: n }, (_, i) => ({
		kind: "test.bulk",
		channel: "email",
		recipient: `${prefix}${from + i}@example.com`,
		subject: `${prefix} ${from + i}`,
		text: "bulk",
		dedupeKey: `${prefix}-${from + i}`,
	}));
/** Published one message per publish, as domains do, a few at a time. */
async function publishEach(node: StoreNode, list: MessageBody[]) {
	for (let i = 0; i < list.length; i += 20) await Promise.all(list.slice(i, i + 20).map(b => publishMessages(node.broker, [b])));
}
function expectEachOnce(prefix: string, n: number) {
	const got = countBy(smtp.mails.filter(m => m.to[0].startsWith(prefix)), m => m.to[0]);
	const missing = Array.from({ length: n }, (_, i) => `${prefix}${i + 1}@example.com`).filter(r => !got[r]);
	const twice = Object.entries(got).filter(([, c]) => c > 1);
	expect({ missing, twice, distinct: Object.keys(got).length }).toEqual({ missing: [], twice: [], distinct: n });
}

beforeAll(async () => {
	smtp = await TestSmtp.start();
});
afterEach(() => {
	smtp.release();
	smtp.delayMs = 0;
});
afterAll(async () => {
	await smtp?.stop();
	for (const ns of namespaces) await deleteStream(ns);
	await dropDatabase(DB);
});

describe("the durable channel", () => {
	it("keeps 500 messages published while no notifier runs, and delivers each exactly once when one starts", async () => {
		const ns = fresh("nstop");
		const publisher = await startNode({ ...base(ns), SERVICES: "users" });
		try {
			// A notifier ran once (its consumer exists) and is stopped.
			const first = await startNode({ ...base(ns), SERVICES: "notifier", NODE_ID: "stop-1" });
			await first.stop();
			await publishEach(publisher, bodies("stopped", 500));
			// They wait on the stream, not in anyone's memory.
			const info = await consumerInfo(ns);
			expect(info?.num_pending).toBe(500);
			expect(smtp.mails.filter(m => m.to[0].startsWith("stopped"))).toHaveLength(0);
			const second = await startNode({ ...base(ns), SERVICES: "notifier", NODE_ID: "stop-2" });
			try {
				await waitFor("500 mails", () => smtp.mails.filter(m => m.to[0].startsWith("stopped")).length >= 500, 60_000);
				await sleep(1500);
				expectEachOnce("stopped", 500);
				const [r] = await sql<{ sent: number; all: number }>(DB, "SELECT count(*) FILTER (WHERE status = 'SENT')::int AS sent, count(*)::int AS all FROM deliveries WHERE kind = 'test.bulk' AND dedupe_key LIKE 'stopped-%'");
				expect(r).toEqual({ sent: 500, all: 500 });
				await waitFor("the consumer to be drained", async () => {
					const i = await consumerInfo(ns);
					return i?.num_pending === 0 && i?.num_ack_pending === 0;
				});
			} finally {
				await second.stop();
			}
		} finally {
			await publisher.stop();
		}
	});

	it("a notifier killed with SIGKILL while sends are in flight: after a restart nothing is lost and nothing was sent twice", async () => {
		const ns = fresh("nkill");
		const publisher = await startNode({ ...base(ns), SERVICES: "users" });
		const env = { ...base(ns), SERVICES: "notifier", NODE_ID: "notifier-kill", NOTIFIER_CONCURRENCY: "4", METRICS_PORT: "0", LOG_LEVEL: "info" };
		let child = spawnNode(env);
		try {
			await waitFor("the child notifier", () => /ServiceBroker with \d+ service\(s\) started/.test(child.output()), 30_000);
			// The store says at start where e-mail goes.
			expect(child.output()).toContain(`Notifications by email go to SMTP smtp://127.0.0.1:${smtp.port}`);
			smtp.delayMs = 30;
			await publishEach(publisher, bodies("killed", 150));
			await waitFor("some mails", () => smtp.mails.filter(m => m.to[0].startsWith("killed")).length >= 30, 30_000);
			// Every send in flight now waits for its 250: the kill lands mid-batch, with messages on the wire
			// (once the number held stops growing, the sends answered before the hold are written SENT).
			smtp.hold();
			let seen = -1;
			await waitFor("sends held in flight", async () => {
				const now = smtp.heldCount;
				const steady = now > 0 && now === seen;
				seen = now;
				if (!steady) await sleep(900);
				return steady;
			}, 15_000);
			const inFlight = smtp.heldCount;
			child.proc.kill("SIGKILL");
			await child.exited;
			await publishEach(publisher, bodies("killed", 150, 151));
			await sleep(500);
			smtp.release();
			// The fault struck: those messages were on the wire when their sender died, so none of them counts as sent.
			expect(smtp.droppedWhileHeld).toBe(inFlight);
			smtp.delayMs = 0;
			child = spawnNode(env);
			await waitFor("300 mails", () => smtp.mails.filter(m => m.to[0].startsWith("killed")).length >= 300, 60_000);
			await sleep(1500);
			expectEachOnce("killed", 300);
			const tookBack = Number(/Took back (\d+) delivery\(ies\) this node had in flight/.exec(child.output())?.[1]);
			expect(tookBack).toBeGreaterThanOrEqual(inFlight);
			const [r] = await sql<{ sent: number }>(DB, "SELECT count(*)::int AS sent FROM deliveries WHERE status = 'SENT' AND dedupe_key LIKE 'killed-%'");
			expect(r.sent).toBe(300);
		} finally {
			await child.stop("SIGKILL");
			await publisher.stop();
		}
	});

	it("two notifier nodes started together share the work and send nothing twice", async () => {
		const ns = fresh("ntwo");
		smtp.delayMs = 15;
		// Started at once on a fresh stream: both subscribe one durable consumer at the same time.
		const [a, b] = await Promise.all([
			startNode({ ...base(ns), SERVICES: "notifier", NODE_ID: "two-a", NOTIFIER_CONCURRENCY: "4" }),
			startNode({ ...base(ns), SERVICES: "notifier", NODE_ID: "two-b", NOTIFIER_CONCURRENCY: "4" }),
		]);
		try {
			await publishEach(a, bodies("shared", 200));
			await waitFor("200 mails", () => smtp.mails.filter(m => m.to[0].startsWith("shared")).length >= 200, 60_000);
			await sleep(1500);
			expectEachOnce("shared", 200);
			const byWorker = await sql<{ worker: string; n: number }>(DB, "SELECT worker, count(*)::int AS n FROM deliveries WHERE dedupe_key LIKE 'shared-%' GROUP BY worker ORDER BY worker");
			expect(byWorker.map(w => w.worker)).toEqual(["two-a", "two-b"]);
			for (const w of byWorker) expect(w.n).toBeGreaterThan(10);
		} finally {
			await Promise.all([a.stop(), b.stop()]);
		}
	});

	it("a delivery leased by a node that never came back is sent by another once the lease lapses, not before", async () => {
		const ns = fresh("nlease");
		const node = await startNode({ ...base(ns), SERVICES: "notifier", NODE_ID: "lease-b", NOTIFIER_LEASE_MS: "3000" });
		try {
			// As a node killed mid-send leaves it: PENDING, one try counted, leased to a worker that is gone.
			const [row] = await sql<{ id: string; lease_until: Date }>(
				DB,
				`INSERT INTO deliveries (dedupe_key, kind, channel, recipient, subject, text, attempts, next_attempt_at, lease_until, worker)
				 VALUES ('ghost-1', 'test.ghost', 'email', 'ghost1@example.com', 'Ghost', 'left behind', 1, now(), now() + interval '3 seconds', 'gone-node')
				 RETURNING id, lease_until`
			);
			const lapses = new Date(row.lease_until).getTime();
			while (Date.now() < lapses - 200) {
				expect(smtp.to("ghost1@example.com")).toHaveLength(0);
				await sleep(200);
			}
			await waitFor("the ghost's mail", () => smtp.to("ghost1@example.com").length === 1, 10_000);
			const [after] = await sql<{ status: string; attempts: number; worker: string }>(DB, "SELECT status, attempts, worker FROM deliveries WHERE id = $1", [row.id]);
			expect(after).toEqual({ status: "SENT", attempts: 2, worker: "lease-b" });
		} finally {
			await node.stop();
		}
	});
});
