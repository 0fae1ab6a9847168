import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Config, configOf } from "../config";

/** Gives a service `this.config`: the typed configuration its broker was built with. */
export function ConfigMixin(): Partial<ServiceSchema<ServiceSettingSchema, any>> {
	return {
		created(this: Service & { config: Config }) {
			this.config = configOf(this.broker);
		},
	};
}
