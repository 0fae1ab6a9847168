"use strict";
/** The live dashboard: polls the cluster's numbers twice a second (GET /api/admin/sales). */
(function () {
	const { el, fmt } = Admin;
	const $ = id => document.getElementById(id);
	let timer = null;

	function render(s) {
		const rate = Object.values(s.claims.perSecond).reduce((a, b) => a + b, 0);
		$("claims-rate").textContent = fmt(Math.round(rate * 10) / 10);
		$("claims-by-outcome").textContent = Admin.outcomes(s.claims.perSecond);
		$("claims-total").textContent = Admin.outcomes(s.claims.total);
		$("p99").textContent = s.p99ClaimMs === null ? "–" : fmt(s.p99ClaimMs);
		$("node-count").textContent = fmt(s.nodes.length);
		$("allocator-count").textContent = fmt(s.allocatorNodes.length);
		$("notifier-lag").textContent = fmt(s.notifier.lag);
		$("failed-deliveries").textContent = fmt(s.notifier.failed);
		const rows = s.products.map(p =>
			el("tr", { "data-product": p.id },
				el("td", {}, `${p.name} (#${p.id})`),
				el("td", { "data-field": "status" }, p.status),
				...["stock", "held", "paid", "expired", "remaining"].map(f => el("td", { class: "num", "data-field": f }, fmt(p[f]))),
				el("td", { "data-field": "claims" }, Admin.outcomes(p.claimsPerSecond)),
				el("td", { class: "num", "data-field": "depth" }, fmt(p.depth)),
				el("td", { class: "num", "data-field": "epoch" }, fmt(p.epoch)),
				el("td", { "data-field": "owner" }, p.owner ? `${p.owner}${p.loaded ? "" : " (idle)"}` : "–"),
				el("td", {}, el("a", { href: `/admin/sales/${p.id}` }, "report"))
			)
		);
		$("products").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "12", class: "muted" }, "No sale opens within a day of now."))]));
		$("updated").textContent = `updated ${Admin.time(s.at)}`;
		document.body.dataset.updated = s.at;
	}

	async function tick() {
		try {
			render(await Admin.api("/api/admin/sales"));
			$("error").textContent = "";
		} catch (err) {
			if (!/HTTP 40[13]/.test(err.message)) $("error").textContent = `Could not refresh: ${err.message}`;
			else return; // signed out: stop polling until signed in again
		}
		// Twice a second: a change shows within a second even when a refresh lands just before it.
		timer = setTimeout(tick, 500);
	}

	Admin.start(() => {
		clearTimeout(timer);
		tick();
	});
})();
