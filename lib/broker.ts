import { BrokerOptions, ServiceBroker, ServiceSchema } from "moleculer";
import { bindConfig, Config, ConfigError } from "../config";
import { brokerOptions } from "../moleculer.config";
import AllocatorService from "../services/allocator.service";
import ApiService from "../services/api.service";
import PaymentsService from "../services/payments.service";
import ProductsService from "../services/products.service";
import SlotsService from "../services/slots.service";
import UsersService from "../services/users.service";

/** Every service a node can run, by the name SERVICES uses. */
export const SERVICES: Record<string, ServiceSchema<any, any>> = {
	users: UsersService,
	products: ProductsService,
	slots: SlotsService,
	allocator: AllocatorService,
	payments: PaymentsService,
	api: ApiService,
};

export function createBroker(config: Config, overrides: Partial<BrokerOptions> = {}): ServiceBroker {
	const names = config.services ?? Object.keys(SERVICES);
	const unknown = names.filter(n => !SERVICES[n]);
	if (unknown.length)
		throw new ConfigError(`SERVICES names unknown service(s): ${unknown.join(", ")} (known: ${Object.keys(SERVICES).join(", ")})`);
	const broker = new ServiceBroker({ ...brokerOptions(config), ...overrides });
	bindConfig(broker, config);
	for (const name of names) broker.createService(SERVICES[name]);
	return broker;
}
