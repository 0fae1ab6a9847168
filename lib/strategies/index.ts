import { Strategies } from "moleculer";
import { LocalFirstStrategy } from "./local-first";
import { ProductAffinityStrategy } from "./product-affinity";

/**
 * Registered by name on every node: a remote action's `strategy` travels as a name in the
 * service catalogue, and each caller resolves it locally.
 */
(Strategies as unknown as { register(name: string, cls: unknown): void }).register("ProductAffinity", ProductAffinityStrategy);
(Strategies as unknown as { register(name: string, cls: unknown): void }).register("LocalFirst", LocalFirstStrategy);

export { LocalFirstStrategy, ProductAffinityStrategy };
