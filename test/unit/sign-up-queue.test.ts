import UsersService from "../../services/users.service";

/**
 * A burst of sign-ups for one login id on a node runs one at a time (the rest then find the id
 * taken before they hash a password), while other ids go on beside it. The integration test
 * (auth.test's 20 simultaneous sign-ups across two nodes) shows the answers; this shows the order.
 */
/** The service's method on a service of its own: `run` queues a sign-up, `queued` is its map. */
function queue() {
	const self = { signingUp: new Map<string, Promise<unknown>>() };
	const method = UsersService.methods!.oneSignUpPerId as unknown as (this: typeof self, id: string, work: () => Promise<unknown>) => Promise<unknown>;
	return { run: (id: string, work: () => Promise<unknown>) => method.call(self, id, work), queued: self.signingUp };
}

/** A piece of work that records when it starts and ends, and finishes when told. */
function step(log: string[], name: string, fail = false) {
	let finish!: () => void;
	const done = new Promise<void>(r => (finish = r));
	const work = async () => {
		log.push(`${name} start`);
		await done;
		log.push(`${name} end`);
		if (fail) throw new Error(`${name} failed`);
		return name;
	};
	return { work, finish };
}

const tick = () => new Promise(r => setImmediate(r));

describe("one sign-up at a time per login id", () => {
	it("runs sign-ups of one id one after another, whatever the case, and others beside them", async () => {
		const { run } = queue();
		const log: string[] = [];
		const [a, b, c, other] = [step(log, "a"), step(log, "b"), step(log, "c"), step(log, "other")];
		const answers = [run("racer", a.work), run("RACER", b.work), run("Racer", c.work), run("someone", other.work)];
		await tick();
		expect(log).toEqual(["a start", "other start"]);
		a.finish();
		await tick();
		expect(log).toEqual(["a start", "other start", "a end", "b start"]);
		b.finish();
		c.finish();
		other.finish();
		expect(await Promise.all(answers)).toEqual(["a", "b", "c", "other"]);
		expect(log.indexOf("c start")).toBeGreaterThan(log.indexOf("b end"));
	});

	it("lets the next one run when the one before it failed, and forgets an id once its queue is empty", async () => {
		const { run, queued } = queue();
		const log: string[] = [];
		const [a, b] = [step(log, "a", true), step(log, "b")];
		const first = run("racer", a.work);
		const second = run("racer", b.work);
		a.finish();
		await expect(first).rejects.toThrow("a failed");
		b.finish();
		await expect(second).resolves.toBe("b");
		expect(log).toEqual(["a start", "a end", "b start", "b end"]);
		expect(queued.size).toBe(0);
	});
});
