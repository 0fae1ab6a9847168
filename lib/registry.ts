import type { ServiceBroker } from "moleculer";

/**
 * The node ids that offer `action` and are available to this broker (Moleculer's registry leaves
 * out nodes whose circuit breaker is open). The typings do not expose getActionEndpoints.
 */
export function availableNodes(broker: ServiceBroker, action: string): string[] {
	const registry = broker.registry as unknown as {
		getActionEndpoints(name: string): { endpoints: { id: string; isAvailable: boolean }[] } | undefined;
	};
	return registry.getActionEndpoints(action)?.endpoints.filter(ep => ep.isAvailable).map(ep => ep.id) ?? [];
}
