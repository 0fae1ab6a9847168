import { GroupWriter } from "../../lib/group-writer";

/** The notifier's SENT marks: many rows per statement, each caller answered by the write that carried its row. */
describe("GroupWriter", () => {
	function recorder() {
		const writes: number[][] = [];
		let release: (() => void) | null = null;
		let fail: Error | null = null;
		const writer = new GroupWriter<number>(async items => {
			writes.push(items);
			await new Promise<void>(r => (release = r));
			if (fail) throw fail;
		});
		return {
			writer,
			writes,
			finish: async () => {
				while (!release) await new Promise(r => setImmediate(r));
				const r = release as () => void;
				release = null;
				r();
				await new Promise(r2 => setImmediate(r2));
			},
			failNext: (e: Error) => (fail = e),
		};
	}

	it("writes rows handed in by the same turn together, and the rows of a write in flight in the next", async () => {
		const rec = recorder();
		const done: number[] = [];
		const first = [1, 2, 3].map(n => rec.writer.add(n).then(() => done.push(n)));
		await new Promise(r => setImmediate(r));
		expect(rec.writes).toEqual([[1, 2, 3]]);
		// Handed in while the first write is in flight: not written yet, and not answered.
		const second = [4, 5].map(n => rec.writer.add(n).then(() => done.push(n)));
		await rec.finish();
		await Promise.all(first);
		expect(done).toEqual([1, 2, 3]);
		expect(rec.writes).toEqual([[1, 2, 3], [4, 5]]);
		await rec.finish();
		await Promise.all(second);
		expect(done).toEqual([1, 2, 3, 4, 5]);
	});

	it("fails every caller of a failed write, and goes on writing what came after", async () => {
		const rec = recorder();
		rec.failNext(new Error("connection lost"));
		// Outcomes caught as they come (a rejection nobody awaits yet would be "unhandled").
		const outcome = (p: Promise<void>) => p.then(() => "written", (e: Error) => e.message);
		const a = outcome(rec.writer.add(1));
		const b = outcome(rec.writer.add(2));
		await new Promise(r => setImmediate(r));
		const c = outcome(rec.writer.add(3));
		await rec.finish();
		expect(await a).toBe("connection lost");
		expect(await b).toBe("connection lost");
		rec.failNext(null as unknown as Error);
		await rec.finish();
		expect(await c).toBe("written");
		expect(rec.writes).toEqual([[1, 2], [3]]);
	});

	it("starts again after a quiet moment", async () => {
		const rec = recorder();
		const a = rec.writer.add(1);
		await rec.finish();
		await a;
		const b = rec.writer.add(2);
		await rec.finish();
		await b;
		expect(rec.writes).toEqual([[1], [2]]);
	});
});
