import { Strategies } from "moleculer";
import type { Endpoint } from "moleculer";

/**
 * Round-robin that prefers this node's own endpoints: what `registry.preferLocal` does, but as a
 * strategy. preferLocal itself is off cluster-wide, because it bypasses every strategy when the
 * caller hosts the service, and the allocator's placement must hold from every caller.
 */
export class LocalFirstStrategy extends Strategies.Base {
	private counter = 0;

	override select(list: Endpoint[]): Endpoint {
		const local = list.filter(ep => ep.local);
		const pool = local.length > 0 ? local : list;
		this.counter = (this.counter + 1) % 1_000_000;
		return pool[this.counter % pool.length];
	}
}
