import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Slot } from "../entities";
import { publicSlot } from "../entities/Slot";
import { DbMixin, WithDb } from "../mixins/db.mixin";
import type { Ctx } from "../lib/context";
import { unauthorized } from "../lib/errors";

/** A buyer's slots: the claim's result, and later its lifecycle (expiry, reminders, reclaim). */
const SlotsService: ServiceSchema<ServiceSettingSchema, WithDb> = {
	name: "slots",
	mixins: [DbMixin()],

	actions: {
		mine: {
			params: {},
			async handler(this: WithDb, ctx: Ctx) {
				if (!ctx.meta.user) throw unauthorized();
				const slots = await this.db.getRepository(Slot).find({
					where: { userId: ctx.meta.user.id },
					order: { heldAt: "DESC", id: "DESC" },
					take: 500,
				});
				return { slots: slots.map(publicSlot) };
			},
		},
	},
};

export default SlotsService;
