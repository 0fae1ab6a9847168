import { Strategies } from "moleculer";
import type { Context, Endpoint } from "moleculer";
import { ownerOf } from "./rendezvous";

/**
 * Sends every call for one product to one node: rendezvous hashing of `params.productId` over
 * the endpoints Moleculer offers, which are only the available ones (a node whose circuit
 * breaker is open is not offered, so its products move instead of failing). Used by the
 * allocator's `claim` action; it only sees every endpoint because `registry.preferLocal` is off
 * (see LocalFirst).
 */
export class ProductAffinityStrategy extends Strategies.Base {
	override select(list: Endpoint[], ctx?: Context): Endpoint {
		const key = (ctx?.params as { productId?: unknown } | undefined)?.productId;
		if (typeof key !== "string" || list.length === 1) return list[0];
		return ownerOf(key, list, ep => ep.id)!;
	}
}
