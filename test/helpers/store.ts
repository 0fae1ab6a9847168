import type { ServiceSchema } from "moleculer";
import { dropDatabase, freshDatabaseUrl } from "./db";
import { startNode, StoreNode, TEST_SECRET } from "./nodes";

export interface FileStore {
	/** The file's own database. */
	readonly db: string;
	/** The node, started before the file's first test and stopped (database dropped) after its last. */
	readonly node: StoreNode;
	/** The environment the node was started with, for a second node of the same store. */
	readonly env: Record<string, string>;
}

/**
 * One store node and one fresh database for a test file: started in beforeAll, stopped and
 * dropped in afterAll. `env` adds to DATABASE_URL and JWT_SECRET; `extend` wraps services (faults).
 */
export function storeForFile(label: string, env: Record<string, string> = {}, extend: Record<string, Partial<ServiceSchema<any, any>>> = {}): FileStore {
	const db = freshDatabaseUrl(label);
	const full = { DATABASE_URL: db, JWT_SECRET: TEST_SECRET, ...env };
	let node: StoreNode | undefined;
	beforeAll(async () => {
		node = await startNode(full, extend);
	});
	afterAll(async () => {
		await node?.stop();
		await dropDatabase(db);
	});
	return {
		db,
		env: full,
		get node() {
			if (!node) throw new Error("the file's store node is not started (use it inside a test)");
			return node;
		},
	};
}
