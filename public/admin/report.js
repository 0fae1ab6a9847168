"use strict";
/** A sale's report (GET /api/admin/sales/:productId): refreshed every two seconds while open. */
(function () {
	const { el, fmt } = Admin;
	const $ = id => document.getElementById(id);
	const productId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
	const COLORS = { GRANTED: "#176b3a", SOLD_OUT: "#a4161a", ALREADY_HOLDING: "#c77d00", SALE_NOT_OPEN: "#5b6270", BUSY: "#7b2cbf", UNAVAILABLE: "#000000" };
	const SVG = "http://www.w3.org/2000/svg";
	let last = null;

	function svg(tag, attrs) {
		const e = document.createElementNS(SVG, tag);
		for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
		return e;
	}

	/** One line per outcome over the sale's seconds; plain SVG, no library. */
	function chart(series) {
		const W = 720, H = 220, L = 48, B = 24, T = 8, R = 8;
		const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "Claims per second by outcome" });
		if (!series.length) {
			const t = svg("text", { x: L, y: H / 2 });
			t.textContent = "No claims recorded yet.";
			root.append(t);
			return { root, outcomes: [] };
		}
		const t0 = Date.parse(series[0].second), t1 = Date.parse(series[series.length - 1].second);
		const span = Math.max(1000, t1 - t0);
		const outcomes = [...new Set(series.flatMap(s => Object.keys(s.counts)))];
		const max = Math.max(1, ...series.flatMap(s => Object.values(s.counts)));
		const x = t => L + ((t - t0) / span) * (W - L - R);
		const y = n => H - B - (n / max) * (H - B - T);
		root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#d9dde3" }), svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#d9dde3" }));
		const yMax = svg("text", { x: 4, y: T + 10 });
		yMax.textContent = fmt(max);
		const xEnd = svg("text", { x: W - R - 40, y: H - 6 });
		xEnd.textContent = `+${Math.round(span / 1000)} s`;
		const xStart = svg("text", { x: L, y: H - 6 });
		xStart.textContent = new Date(t0).toISOString().slice(11, 19);
		root.append(yMax, xEnd, xStart);
		for (const o of outcomes) {
			// Seconds with no claim of this outcome are zero, so a line drops instead of bridging a gap.
			const pts = [];
			for (let t = t0; t <= t1; t += 1000) {
				const s = series.find(p => Date.parse(p.second) === t);
				pts.push(`${x(t).toFixed(1)},${y((s && s.counts[o]) || 0).toFixed(1)}`);
			}
			const line = pts.length === 1 ? svg("circle", { cx: x(t0), cy: pts[0].split(",")[1], r: 3, fill: COLORS[o] || "#2a4bd7" }) : svg("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[o] || "#2a4bd7", "stroke-width": 2 });
			line.setAttribute("data-outcome", o);
			root.append(line);
		}
		return { root, outcomes };
	}

	function render(r) {
		last = r;
		const fair = r.orderCheck.verdict === "fair";
		$("verdict").textContent = r.orderCheck.verdict;
		$("verdict").className = `verdict ${fair ? "fair" : "unfair"}`;
		$("problems").replaceChildren(...r.orderCheck.problems.map(p => el("li", { class: "error" }, p)));
		$("notes").replaceChildren(...r.orderCheck.notes.map(p => el("li", {}, p)));
		$("product-name").textContent = `${r.product.name} (#${r.product.id})`;
		$("stock").textContent = fmt(r.units.stock);
		$("duration").textContent = r.sale.durationMs === null ? "–" : `${(r.sale.durationMs / 1000).toFixed(2)} s`;
		$("granted").textContent = fmt(r.units.granted);
		$("paid").textContent = fmt(r.units.paid);
		$("reclaimed").textContent = fmt(r.units.reclaimed);
		$("resold").textContent = fmt(r.units.resold);
		$("sale-at").textContent = Admin.time(r.product.saleAt);
		$("last-unit").textContent = Admin.time(r.sale.lastUnitAt);
		$("sold-out-at").textContent = Admin.time(r.sale.soldOutAt);
		$("claims").textContent = Admin.outcomes(r.claims.byOutcome);
		const c = chart(r.series);
		$("chart").replaceChildren(c.root);
		$("legend").replaceChildren(...c.outcomes.map(o => el("span", {}, el("i", { "aria-hidden": "true", class: `k-${o}` }), o)));
		$("epochs").replaceChildren(...r.epochs.map(e => el("tr", {}, el("td", { class: "num" }, e.epoch), el("td", {}, Admin.outcomes(e.byOutcome)), el("td", { class: "num" }, fmt(e.lastGrantSeq)), el("td", { class: "num" }, fmt(e.firstSoldOutSeq)))));
		$("winners").replaceChildren(
			...r.winners.slice(0, 1000).map(w =>
				el("tr", { "data-slot": w.slotId },
					el("td", { class: "num" }, w.place), el("td", { class: "num" }, fmt(w.epoch)), el("td", { class: "num" }, fmt(w.seq)),
					el("td", {}, w.buyer.loginId || w.buyer.id), el("td", { class: "num" }, w.unit), el("td", {}, `${w.slotId} ${w.status}`),
					el("td", {}, Admin.time(w.heldAt)), el("td", {}, w.payment || "none")
				)
			)
		);
		document.body.dataset.generated = r.generatedAt;
	}

	async function tick() {
		try {
			const { report } = await Admin.api(`/api/admin/sales/${encodeURIComponent(productId)}`);
			render(report);
			$("error").textContent = "";
			// A closed sale does not change: stop refreshing once nothing is held or free.
			if (report.units.held === 0 && report.units.available === 0) return;
		} catch (err) {
			if (/HTTP 40[13]/.test(err.message)) return;
			$("error").textContent = `Could not load the report: ${err.message}`;
		}
		setTimeout(tick, 2000);
	}

	$("download").addEventListener("click", () => {
		if (!last) return;
		const a = el("a", { href: URL.createObjectURL(new Blob([JSON.stringify(last, null, 2)], { type: "application/json" })), download: `sale-${last.product.id}-report.json` });
		document.body.append(a);
		a.click();
		a.remove();
	});

	Admin.start(tick);
})();
