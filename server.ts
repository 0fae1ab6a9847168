import { ConfigError, loadConfig } from "./config";
import { createBroker, createReplBroker } from "./broker";
import { CHANNELS } from "./services/notifier/transports";

/**
 * Starts one node: the services named in SERVICES (default: all), on the configured transporter.
 * With --repl, an operator's node that only watches a cluster (see createReplBroker).
 */
async function main(): Promise<void> {
	const config = loadConfig(process.env, CHANNELS);
	const repl = process.argv.includes("--repl");
	const broker = repl ? createReplBroker(config) : createBroker(config);
	if (config.jwtSecretGenerated)
		broker.logger.warn("JWT_SECRET is not set: using a random secret for this process; tokens die with it.");
	if (config.transporter && config.nodeSecretDerived)
		broker.logger.warn("NODE_SECRET is not set: the nodes' identity secret is derived from JWT_SECRET; set NODE_SECRET (32+ bytes, the same on every node) so that the key minting tokens is not the one every node signs with.");
	await broker.start();
	if (repl) broker.repl();
}

main().catch(err => {
	// A configuration mistake exits 2 with the reason alone; anything else exits 1.
	if (err instanceof ConfigError) {
		console.error(`Dopamine Store cannot start: ${err.message}`);
		process.exit(2);
	}
	console.error("Dopamine Store failed to start:", err?.message ?? err);
	process.exit(1);
});
