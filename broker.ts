import os from "node:os";
import { BrokerOptions, ServiceBroker, ServiceSchema } from "moleculer";
import { bindConfig, Config, ConfigError } from "./config";
import { describeBudget, pgBudget } from "./lib/pg-budget";
import { brokerOptions } from "./moleculer.config";
import AllocatorService from "./services/allocator.service";
import ApiService from "./services/api.service";
import NotifierService from "./services/notifier.service";
import PaymentsService from "./services/payments.service";
import ProductsService from "./services/products.service";
import SalesService from "./services/sales.service";
import SlotsService from "./services/slots.service";
import UsersService from "./services/users.service";
import WaitlistService from "./services/waitlist.service";

/** Every service a node can run, by the name SERVICES uses: a schema, or a factory of one from the config. */
export const SERVICES: Record<string, ServiceSchema<any, any> | ((config: Config) => ServiceSchema<any, any>)> = {
	users: UsersService,
	products: ProductsService,
	slots: SlotsService,
	allocator: AllocatorService,
	payments: PaymentsService,
	notifier: NotifierService,
	sales: SalesService,
	waitlist: WaitlistService,
	api: ApiService,
};

/** The schemas of the services the config names (SERVICES), by name, in the order named. */
export function serviceSchemas(config: Config): { name: string; schema: ServiceSchema<any, any> }[] {
	const names = config.services ?? Object.keys(SERVICES);
	const unknown = names.filter(n => !SERVICES[n]);
	if (unknown.length)
		throw new ConfigError(`SERVICES names unknown service(s): ${unknown.join(", ")} (known: ${Object.keys(SERVICES).join(", ")})`);
	return names.map(name => {
		const entry = SERVICES[name];
		return { name, schema: typeof entry === "function" ? entry(config) : entry };
	});
}

/** A node's broker with its config bound, and no service yet. */
export function bareBroker(config: Config, overrides: Partial<BrokerOptions> = {}): ServiceBroker {
	const broker = new ServiceBroker({ ...brokerOptions(config), ...overrides });
	bindConfig(broker, config);
	return broker;
}

/** Builds a node's broker with the services its config names. */
export function createBroker(config: Config, overrides: Partial<BrokerOptions> = {}): ServiceBroker {
	const schemas = serviceSchemas(config);
	const broker = bareBroker(config, overrides);
	for (const { schema } of schemas) broker.createService(schema);
	// One line an operator adds up over the nodes (PostgreSQL's max_connections, PgBouncer's pools).
	broker.logger.info(describeBudget(pgBudget(config, broker.services)));
	return broker;
}

/**
 * The node `npm run repl` starts. Joined to a cluster (TRANSPORTER set) it runs no service unless
 * SERVICES names some: an operator's terminal must not become an allocator and take products over
 * in the middle of a sale, nor a second gateway or notifier. Its commands are calls, so they reach
 * the cluster's services. Alone (no TRANSPORTER) there is no cluster to watch, so it runs the whole
 * store in this process, as `npm start` does.
 */
export function createReplBroker(config: Config): ServiceBroker {
	if (!config.transporter) return createBroker(config);
	const watcher: Config = {
		...config,
		services: config.services ?? [],
		// Its own name, never a running node's (NODE_ID is often set for the node it sits beside).
		nodeId: `repl-${os.hostname()}-${process.pid}`,
	};
	// Metrics stay on (the dashboards ask every node) but without a listener: the node beside it
	// already holds METRICS_PORT.
	return createBroker(watcher, { metrics: { enabled: true, reporter: [] } });
}
