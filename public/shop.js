/*
 * `/`: every product with its sale time, state and units left, each linking to its own page.
 * States follow the server's clock: a scheduled product turns "on sale" at its second without a
 * reload; the list is fetched again then, every 10 s while something is on sale (units go fast),
 * and every minute otherwise, only while the page is visible.
 */
"use strict";
(function () {
	const { t, fmt, el, say, serverNow, syncClock, request, session } = window.Store;
	const list = document.getElementById("products");
	const loading = document.getElementById("loading");
	const message = document.getElementById("list-message");
	let products = [];
	let timer = null;

	function showWho() {
		const who = document.getElementById("who");
		const s = session.get();
		who.replaceChildren(s && s.user ? t("signedInAs", { who: s.user.loginId }) : "");
	}

	/** The state now, by the server's clock: the list may be a few seconds old. */
	function stateOf(p) {
		if (serverNow() < Date.parse(p.saleAt)) return "SCHEDULED";
		return p.remaining > 0 ? "ON_SALE" : "SOLD_OUT";
	}

	function render() {
		loading.hidden = true;
		if (products.length === 0) {
			list.replaceChildren(el("li", { class: "card" }, t("noProducts")));
			return;
		}
		list.replaceChildren(
			...products.map(p => {
				const state = stateOf(p);
				return el(
					"li",
					{ class: "card", "data-product": p.id },
					el("h2", {}, el("a", { class: "name", href: `/p/${encodeURIComponent(p.id)}` }, p.name)),
					el("span", { class: "badge", "data-status": state, "data-role": "status" }, t("status" + state)),
					el(
						"dl",
						{ class: "facts" },
						el("dt", {}, t("price")),
						el("dd", {}, fmt.money(p.price)),
						el("dt", {}, t("saleAt")),
						el("dd", {}, el("time", { datetime: p.saleAt }, fmt.when(p.saleAt))),
						el("dt", {}, t("left")),
						el("dd", { "data-role": "remaining" }, t("leftOf", { n: p.remaining, stock: p.stock }))
					),
					state === "SCHEDULED" ? el("p", { class: "countdown", "data-role": "countdown", "data-sale-at": p.saleAt }, countdownText(p.saleAt)) : null
				);
			})
		);
	}

	const countdownText = saleAt => t("opensIn", { t: fmt.duration(Date.parse(saleAt) - serverNow(), true) });

	/** Once a second: countdowns, and a product whose second has come turns "on sale". */
	function tick() {
		let crossed = false;
		for (const node of list.querySelectorAll("[data-role=countdown]")) {
			if (Date.parse(node.dataset.saleAt) <= serverNow()) crossed = true;
			else node.textContent = countdownText(node.dataset.saleAt);
		}
		if (crossed) {
			render();
			schedule(300 + Math.random() * 700);
		}
	}

	async function refresh() {
		const r = await request("GET", "/api/products");
		if (r.status === 200 && r.body && Array.isArray(r.body.products)) {
			products = r.body.products;
			say(message, "");
			render();
		} else {
			say(message, t("loadFailed"), "bad");
		}
		const onSale = products.some(p => stateOf(p) === "ON_SALE");
		schedule(r.status === 200 ? (onSale ? 10_000 : 60_000) : 10_000);
	}

	function schedule(ms) {
		clearTimeout(timer);
		timer = setTimeout(() => {
			if (document.visibilityState === "visible") refresh();
		}, ms);
	}

	document.addEventListener("visibilitychange", () => {
		if (document.visibilityState === "visible") refresh();
	});

	showWho();
	syncClock(3).then(refresh);
	setInterval(tick, 250);
})();
