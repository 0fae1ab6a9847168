const { TestEnvironment } = require("jest-environment-node");

/**
 * Node environment with a leak guard, after the practice of bullmq and graphile-worker: a test
 * file that leaves a broker or a child process running fails, whatever its tests said.
 */
class GuardedEnvironment extends TestEnvironment {
	async setup() {
		await super.setup();
		this.global.__openResources = new Map();
		// Cleanups of shared servers' leftovers (a namespace's JetStream stream), run after the file.
		this.global.__afterFile = [];
	}

	async teardown() {
		const open = [...this.global.__openResources.values()];
		for (const r of open) {
			try {
				await r.close();
			} catch {
				/* already gone */
			}
		}
		for (const cleanup of this.global.__afterFile) await cleanup().catch(() => undefined);
		await super.teardown();
		if (open.length > 0)
			throw new Error(`Test file leaked ${open.length} running resource(s): ${open.map(r => r.name).join(", ")}`);
	}
}

module.exports = GuardedEnvironment;
