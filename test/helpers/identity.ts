import type { ServiceBroker } from "moleculer";
import type { AuthUser } from "../../lib/context";
import { configOf } from "../../config";
import { actingAs } from "../../lib/identity";
import { unsealText } from "../../lib/sealed";

/**
 * Call options for an action that declares `auth` (lib/identity.ts): the identity signed with the
 * broker's node secret, as the gateway or the REPL would sign it. `meta: { user }` alone is refused.
 */
export const as = (broker: ServiceBroker, user: AuthUser) => actingAs(broker, user);
export const asAdmin = (broker: ServiceBroker, id = "test-admin") => actingAs(broker, { id, role: "admin" });
export const asBuyer = (broker: ServiceBroker, id: string) => actingAs(broker, { id, role: "buyer" });

/** A published message's text as its recipient reads it: sealed parts (a reset link) opened with the node secret (lib/sealed.ts). */
export const opened = (broker: ServiceBroker, text: string) => unsealText(configOf(broker).nodeSecret, text);
