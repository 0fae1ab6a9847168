import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";

/**
 * One home per table (README, "Rules the layout keeps"): every SQL statement lives in
 * `store/<table>.ts` (no write, and no `FROM table`, outside store/), and a store file writes only
 * its own table, save the few statements that write two tables in one CTE, listed below with the
 * reason. TypeORM's entity files and migrations (entities/) are exempt. `store/` is floor one: it
 * imports lib/, contracts/ and entities/ only. Agenda's private table is named in
 * store/agenda-jobs.ts alone.
 */

const ROOT = resolve(__dirname, "../..");
/** Production code that may not hold a write (bench/ and test/ set up their own databases). */
const SCANNED = ["services", "lib", "mixins", "repl", "config", "store", "broker.ts", "server.ts", "moleculer.config.ts"];

/** Store files with a statement that writes a second table in the same CTE: file -> { table: why }. */
const ONE_STATEMENT_TWO_TABLES: Record<string, Record<string, string>> = {
	"store/slots.ts": { outbox: "the batch commit writes the grants and their outbox rows in one statement (grantBatchSql)" },
	"store/agenda-jobs.ts": { slots: "the scheduling CTE inserts a slot's jobs and marks the slot in one statement (scheduleDueJobsSql)" },
};

function tsFiles(path: string): string[] {
	const full = join(ROOT, path);
	let st;
	try {
		st = statSync(full);
	} catch {
		return [];
	}
	if (st.isFile()) return path.endsWith(".ts") ? [path] : [];
	return readdirSync(full).flatMap(name => tsFiles(join(path, name)));
}

/** The file's text without comment lines (a doc comment may say "UPDATE" in prose). */
function code(file: string): string {
	return readFileSync(join(ROOT, file), "utf8")
		.split("\n")
		.filter(line => !/^\s*(\/\/|\/\*|\*)/.test(line))
		.join("\n");
}

/** Every table a file's SQL writes: INSERT INTO t, UPDATE t [alias] SET, DELETE FROM t (keywords in capitals, as all SQL here is). */
function writesOf(text: string): { table: string; statement: string }[] {
	const found: { table: string; statement: string }[] = [];
	const patterns = [/\bINSERT\s+INTO\s+([^\s(]+)/g, /\bUPDATE\s+([^\s(]+)(?:\s+(?:AS\s+)?[a-z_]\w*)?\s+SET\b/g, /\bDELETE\s+FROM\s+([^\s(]+)/g];
	for (const re of patterns)
		for (const m of text.matchAll(re)) found.push({ table: m[1].replace(/"/g, ""), statement: m[0].replace(/\s+/g, " ") });
	return found;
}

const files = SCANNED.flatMap(tsFiles);
const storeFiles = files.filter(f => f.startsWith("store/"));

describe("one home per table", () => {
	it("the scan finds the store and the services", () => {
		expect(files.some(f => f.startsWith("services/"))).toBe(true);
		expect(storeFiles).toContain("store/slots.ts");
	});

	it("no statement writes a table outside store/", () => {
		const outside = files
			.filter(f => !f.startsWith("store/"))
			.flatMap(f => writesOf(code(f)).map(w => `${f}: ${w.statement}`));
		expect(outside).toEqual([]);
	});

	it("no statement reads a table outside store/ either", () => {
		const outside = files
			.filter(f => !f.startsWith("store/"))
			.flatMap(f => [...code(f).matchAll(/\b(?:FROM|JOIN)\s+([a-z_]\w*)/g)].map(m => `${f}: ${m[0]}`));
		expect(outside).toEqual([]);
	});

	it("each store file writes its own table only (save the one-statement CTEs listed here)", () => {
		const strays: string[] = [];
		for (const f of storeFiles) {
			const own = basename(f, ".ts").replace(/-/g, "_");
			const allowed = ONE_STATEMENT_TWO_TABLES[f] ?? {};
			for (const w of writesOf(code(f))) if (w.table !== own && !(w.table in allowed)) strays.push(`${f}: ${w.statement}`);
		}
		expect(strays).toEqual([]);
	});

	it("each listed exception is still there (a stale one would hide a new stray)", () => {
		for (const [f, tables] of Object.entries(ONE_STATEMENT_TWO_TABLES))
			for (const table of Object.keys(tables)) expect(`${f}: ${writesOf(code(f)).some(w => w.table === table)}`).toBe(`${f}: true`);
	});

	it("store/ imports only lib/, contracts/, entities/ and itself", () => {
		const bad: string[] = [];
		for (const f of storeFiles)
			for (const m of readFileSync(join(ROOT, f), "utf8").matchAll(/from\s+"(\.[^"]+)"/g)) {
				const target = relative(ROOT, resolve(ROOT, dirname(f), m[1]));
				if (!/^(lib|contracts|entities|store)(\/|$)/.test(target)) bad.push(`${f} imports ${m[1]}`);
			}
		expect(bad).toEqual([]);
	});

	it("Agenda's private table is named in store/agenda-jobs.ts alone", () => {
		const naming = files.filter(f => f !== "store/agenda-jobs.ts" && readFileSync(join(ROOT, f), "utf8").includes("agenda_jobs"));
		expect(naming).toEqual([]);
	});

	it("the scan sees writes in every form the store uses", () => {
		const sample = `INSERT INTO deliveries (a) VALUES (1); UPDATE slots s SET x = 1; UPDATE users SET y = 2; DELETE FROM outbox WHERE true;
			WITH a AS (UPDATE sale_waits w SET sale_at = $2 FROM old) SELECT 1`;
		expect(writesOf(sample).map(w => w.table).sort()).toEqual(["deliveries", "outbox", "sale_waits", "slots", "users"]);
		expect(writesOf("SELECT 1 FROM slots FOR UPDATE SKIP LOCKED")).toEqual([]);
	});
});
