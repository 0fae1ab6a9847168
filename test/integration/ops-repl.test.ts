import { freePort } from "../../bench/lib/store";
import { dropDatabase, freshDatabaseUrl, sql } from "../helpers/db";
import { ChildNode, spawnNode, TEST_SECRET, waitFor } from "../helpers/nodes";
import { claim, createSale, seedBuyers, slotStatus } from "../helpers/sale";
import { runRepl } from "../helpers/repl";
import { TestSmtp } from "../helpers/smtp";


/**
 * The operators' REPL commands, each run through the REPL's own command runner: a store started
 * with `--repl` (as `npm run repl` does), commands written to its stdin, their output read back.
 */
describe("operators' REPL", () => {
	let db: string;
	let node: ChildNode;
	let base: string;
	/** A real SMTP server, so an e-mail is SENT when it answers 250 and one with no recipient FAILS (as in production). */
	let smtp: TestSmtp;

	/** Runs one command on this file's REPL node and returns what it printed (test/helpers/repl.ts). */
	const run = (command: string, until?: RegExp | string) => runRepl(node, command, until);

	beforeAll(async () => {
		db = freshDatabaseUrl("repl_ops");
		smtp = await TestSmtp.start();
		const port = await freePort();
		base = `http://127.0.0.1:${port}`;
		node = spawnNode({ DATABASE_URL: db, PORT: String(port), METRICS_PORT: "0", JWT_SECRET: TEST_SECRET, LOG_LEVEL: "warn", SMTP_URL: smtp.url, MAIL_FROM: "Store <store@example.com>" }, ["--repl"]);
		await waitFor("the REPL prompt", () => /mol \$/.test(node.output()), 30_000);
		await waitFor("the store to answer", async () => (await fetch(`${base}/api/health`)).status === 200, 30_000);
	});

	afterAll(async () => {
		await node?.stop();
		await smtp?.stop();
		await dropDatabase(db);
	});

	it("lists every store command with its help text", async () => {
		const help = await run("help", /^(?=[\s\S]*report \[options\] <productId>)(?=[\s\S]*resend <deliveryId>)[\s\S]*as an administrator/);
		for (const [cmd, text] of [
			["sale <productId>", "live state"],
			["sales", "today's sales"],
			["owners", "owns which"],
			["expire <slotId>", "Expire one HELD slot"],
			["sweep", "safety net"],
			["deliveries [options]", "--failed"],
			["resend <deliveryId>", "Send one delivery again"],
			["report [options] <productId>", "order check verdict"],
			["admin <action>", "as an administrator"],
		])
			expect(help).toMatch(new RegExp(`${cmd.replace(/[[\]<>]/g, "\\$&")}\\s+.*${text}`));
	});

	it("runs an admin action as an administrator (`admin`), then shows the sale live, its owner and its report", async () => {
		const saleAt = new Date(Date.now() - 1000).toISOString();
		const created = await run(`admin products.create --name "REPL drop" --price 1500 --stock 3 --saleAt ${saleAt}`, /\n\}\s*\n/);
		const product = JSON.parse(created.slice(created.indexOf("{"))).product;
		expect(product).toMatchObject({ name: "REPL drop", stock: 3 });
		expect(await sql(db, "SELECT stock FROM products WHERE id = $1", [product.id])).toEqual([{ stock: 3 }]);
		// Moleculer's own `call` without an identity is refused by the action.
		expect(await run(`call products.update '{"id":"${product.id}","stock":9}'`, /UNAUTHORIZED|Sign in first/)).toMatch(/UNAUTHORIZED|Sign in first/);
		expect(await run(`admin products.update --id ${product.id} --stock 4`, /"stock": 4/)).toMatch(/"stock": 4/);

		const buyers = await seedBuyers(db, 6, "replb");
		const answers = [];
		for (const b of buyers) answers.push(await claim(base, product.id, b));
		expect(answers.filter(a => a.status === 201)).toHaveLength(4);

		const sales = await run("sales", /REPL drop\s+SOLD_OUT\s+\S+\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+\S+/);
		expect(sales).toMatch(new RegExp(`\\n${product.id}\\s+REPL drop\\s+SOLD_OUT\\s+\\S+\\s+4\\s+4\\s+0\\s+0\\s+0\\s+\\S+`));

		const sale = await run(`sale ${product.id}`, /^(?=[\s\S]*remaining \d+)(?=[\s\S]*owner \S+)[\s\S]*(remaining \d+|owner \S+)/);
		expect(sale).toContain(`Sale ${product.id} "REPL drop": SOLD_OUT`);
		expect(sale).toMatch(/stock 4\s+held 4\s+paid 0\s+expired 0\s+remaining 0/);
		const owner = /owner (\S+)/.exec(sale)![1];
		expect(owner).not.toBe("-");

		const owners = await run("owners", /^(?=[\s\S]*allocator nodes: )[\s\S]*REPL drop\s+\S+\s+\d+\s+\S+/);
		expect(owners).toContain(`allocator nodes: ${owner}`);
		expect(owners).toMatch(new RegExp(`\\n${product.id}\\s+REPL drop\\s+${owner}\\s+\\d+\\s+yes`));

		// The recorder writes its facts about once a second.
		await waitFor("the claim facts", async () => (await sql(db, "SELECT 1 FROM claim_epochs WHERE product_id = $1 AND outcome = 'SOLD_OUT'", [product.id])).length > 0);
		const report = await run(`report ${product.id}`, /^(?=[\s\S]*order check: )[\s\S]*reclaimed \d+/);
		expect(report).toContain("order check: fair");
		expect(report).toMatch(/claims: .*GRANTED 4/);
		expect(report).toMatch(/grants 4, held 4, paid 0, reclaimed 0/);
		const printed = await run(`report ${product.id} --json`, /\n\}\s*\n/);
		const json = JSON.parse(printed.slice(printed.indexOf("{"), printed.lastIndexOf("}") + 1));
		expect(json.orderCheck.verdict).toBe("fair");
		expect(json.winners.map((w: any) => w.place)).toEqual([1, 2, 3, 4]);

		const slotId = answers.find(a => a.status === 201)!.body.slot.id;
		expect(await run(`expire ${slotId}`, `Slot ${slotId} expired; its unit is on sale again.`)).toContain(`Slot ${slotId} expired; its unit is on sale again.`);
		expect(await slotStatus(db, slotId)).toBe("EXPIRED");
		expect(await run(`expire ${slotId}`, `Slot ${slotId} was not HELD: nothing expired.`)).toContain(`Slot ${slotId} was not HELD: nothing expired.`);
		expect(await run("sweep", /Sweep: \d+ slot\(s\) reclaimed, \d+ grant\(s\) given their jobs\./)).toMatch(/Sweep: \d+ slot\(s\) reclaimed, \d+ grant\(s\) given their jobs\./);
		expect(await run(`report ${product.id}`, /grants 4, held 3, paid 0, reclaimed 1/)).toMatch(/grants 4, held 3, paid 0, reclaimed 1/);
		expect(await run("sale 999999", /ERROR: .*not found/i)).toMatch(/ERROR: .*not found/i);
	});

	it("lists deliveries (all, and --failed only) and re-sends one", async () => {
		// Two grants: one buyer's e-mail goes out (SENT), the other's account has no address (FAILED at once).
		const productId = await createSale(db, 2);
		const [mute, heard] = await seedBuyers(db, 2, "repld");
		await sql(db, "UPDATE users SET email = '' WHERE id = $1", [mute.id]);
		const grants = [await claim(base, productId, mute), await claim(base, productId, heard)];
		expect(grants.map(g => g.status)).toEqual([201, 201]);
		/** A grant's "slot granted" e-mail (published from the allocator's outbox with its row's id as the key), once tried. */
		const deliveryOf = async (slotId: string) => {
			const rows = await sql<{ id: string; status: string; last_error: string | null }>(
				db,
				"SELECT d.id::text, d.status, d.last_error FROM deliveries d JOIN outbox o ON d.dedupe_key = 'outbox-' || o.id WHERE o.slot_id = $1 AND d.kind = 'slot.granted'",
				[slotId]
			);
			return rows.length === 1 && rows[0].status !== "PENDING" ? rows[0] : null;
		};
		const [mutedSlot, heardSlot] = grants.map(g => String(g.body.slot.id));
		await waitFor("both grants' e-mails tried", async () => !!(await deliveryOf(mutedSlot)) && !!(await deliveryOf(heardSlot)));
		const failed = (await deliveryOf(mutedSlot))!;
		const sent = (await deliveryOf(heardSlot))!;
		expect(failed).toMatchObject({ status: "FAILED", last_error: "e-mail without a recipient" });
		expect(sent).toMatchObject({ status: "SENT", last_error: null });
		const [{ email: heardAt }] = await sql<{ email: string }>(db, "SELECT email FROM users WHERE id = $1", [heard.id]);
		expect(smtp.to(heardAt)).toHaveLength(1);
		// The failure is told to the operators; with no operators' channel here, that message is itself
		// logged FAILED. Once it is there, nothing more is on its way to the log.
		await waitFor("the operators' message of the failure", async () =>
			(await sql(db, "SELECT 1 FROM deliveries WHERE kind = 'ops.deliveriesFailed' AND status = 'FAILED' AND text LIKE '%#' || $1 || ' slot.granted %'", [failed.id])).length > 0);
		const [{ n: failedCount }] = await sql<{ n: number }>(db, "SELECT count(*)::int AS n FROM deliveries WHERE status = 'FAILED'");

		// The whole table is printed before the prompt that follows the count line.
		const all = await run("deliveries", /^\d+ deliver(y|ies)\n[\s\S]*?mol \$ /m);
		expect(all).toMatch(/^\d+ deliver(y|ies)/m);
		const row = (out: string, id: string) => new RegExp(`\\n${id}\\s+slot\\.granted\\s+email\\s[^\\n]*`).exec(out)?.[0] ?? null;
		expect(row(all, failed.id)).toMatch(/\sFAILED\s+1\s+e-mail without a recipient\s/);
		expect(row(all, sent.id)).toMatch(new RegExp(`\\srepld\\d+@example\\.com\\s+SENT\\s`));
		const id = /\n(\d+)\s+slot\.granted\s+email/.exec(all)![1];
		const onlyFailed = await run("deliveries --failed", /^\d+ deliver(y|ies) failed\n[\s\S]*?mol \$ /m);
		expect(onlyFailed).toMatch(new RegExp(`^${failedCount} deliver(y|ies) failed$`, "m"));
		expect(failedCount).toBeGreaterThanOrEqual(1);
		expect(row(onlyFailed, failed.id)).toMatch(/\sFAILED\s+1\s+e-mail without a recipient\s/);
		expect(row(onlyFailed, sent.id)).toBeNull();
		// Every row it lists is a failed one.
		const listed = onlyFailed.split("\n").filter(l => /^\d+\s/.test(l) && !/^\d+ deliver(y|ies) failed$/.test(l));
		expect(listed).toHaveLength(failedCount);
		expect(listed.every(l => /\sFAILED\s/.test(l))).toBe(true);
		expect(await run(`resend ${id}`, `Delivery ${id} queued to be sent again.`)).toContain(`Delivery ${id} queued to be sent again.`);
		expect(await run("resend 999999999", /ERROR: .*not found/i)).toMatch(/ERROR: .*not found/i);
	});
});
