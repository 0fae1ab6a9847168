"use strict";
/**
 * Products in /admin: every product grouped as upcoming, on sale, sold out and past; a form that
 * creates one (its sale time defaulting to the next 10:00 in the store's time zone, GET /api/time)
 * or edits one (name, description, price, stock, sale time) and deletes it. The service's refusals
 * are shown as sentences, by their type.
 */
(function () {
	const { el, fmt } = Admin;
	const $ = id => document.getElementById(id);
	let zone = "Asia/Seoul";
	let editing = null;

	/** The wall-clock parts of an instant in the store's zone. */
	function wall(t) {
		const parts = {};
		for (const p of new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).formatToParts(new Date(t)))
			parts[p.type] = Number(p.value);
		return parts;
	}
	const offsetAt = t => { const w = wall(t); return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second) - Math.floor(t / 1000) * 1000; };
	/** "2026-12-05T10:00[:30]" in the store's zone to an instant (checked once more across a DST change). */
	function instantOf(local) {
		const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d))?$/.exec(local);
		if (!m) return NaN;
		const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
		const first = guess - offsetAt(guess);
		return guess - offsetAt(first);
	}
	const pad = n => String(n).padStart(2, "0");
	function localOf(t) {
		const w = wall(t);
		return `${w.year}-${pad(w.month)}-${pad(w.day)}T${pad(w.hour)}:${pad(w.minute)}${w.second ? `:${pad(w.second)}` : ""}`;
	}
	function nextTen() {
		const w = wall(Date.now());
		const day = new Date(Date.UTC(w.year, w.month - 1, w.day + (w.hour >= 10 ? 1 : 0)));
		return `${day.getUTCFullYear()}-${pad(day.getUTCMonth() + 1)}-${pad(day.getUTCDate())}T10:00`;
	}
	const storeTime = iso => `${localOf(Date.parse(iso)).replace("T", " ")} (${zone})`;

	/** The service's rules, in the admin's words. */
	function explain(status, body) {
		const type = body && body.type;
		const data = (body && body.data) || {};
		if (type === "STOCK_BELOW_HELD") return `Stock cannot go below ${fmt(data.held)}: that many units are held or paid already.`;
		if (type === "PRODUCT_HAS_ORDERS") return "This product has orders (a unit was held, paid or expired): its sale time can no longer change and it cannot be deleted.";
		if (type === "SALE_STARTED") return "This sale has started: the product can no longer be deleted.";
		if (type === "PRODUCT_NOT_FOUND") return "This product no longer exists.";
		if (type === "STOCK_CHANGED") return "Units were claimed while the stock changed; try again.";
		return (body && body.message) || `The store answered ${status}.`;
	}

	async function call(method, path, payload) {
		const res = await fetch(path, {
			method,
			headers: { "content-type": "application/json", authorization: `Bearer ${Admin.token()}` },
			body: payload === undefined ? undefined : JSON.stringify(payload),
		});
		const text = await res.text();
		let body = null;
		try { body = text ? JSON.parse(text) : null; } catch { body = null; }
		if (res.status === 401 || res.status === 403) Admin.showLogin(res.status === 403 ? "This account is not an administrator." : "Please sign in again.");
		return { ok: res.ok, status: res.status, body };
	}

	function group(p, startOfToday) {
		if (Date.parse(p.saleAt) < startOfToday) return "past";
		return { SCHEDULED: "upcoming", ON_SALE: "onSale", SOLD_OUT: "soldOut" }[p.status] || "past";
	}
	const GROUPS = [["upcoming", "Upcoming"], ["onSale", "On sale"], ["soldOut", "Sold out"], ["past", "Past (earlier days)"]];

	async function load() {
		const [res, waits] = await Promise.all([call("GET", "/api/products"), call("GET", "/api/admin/waitlist")]);
		// Buyers who asked to be told before the opening ("notify me"); none when the waitlist is down.
		const waiting = (waits.ok && waits.body.waiting) || {};
		if (!res.ok) return void ($("error").textContent = `Could not load the products: ${explain(res.status, res.body)}`);
		$("error").textContent = "";
		const w = wall(Date.now());
		const startOfToday = instantOf(`${w.year}-${pad(w.month)}-${pad(w.day)}T00:00`);
		const by = {};
		for (const p of res.body.products) (by[group(p, startOfToday)] = by[group(p, startOfToday)] || []).push(p);
		$("groups").replaceChildren(...GROUPS.map(([key, title]) => {
			const rows = (by[key] || []).map(p => {
				const edit = el("button", { type: "button", class: "link", "aria-label": `Edit ${p.name}` }, "Edit");
				edit.addEventListener("click", () => startEdit(p));
				return el("tr", { "data-product": p.id },
					el("td", {}, el("a", { href: `/p/${p.id}` }, p.name)), el("td", {}, storeTime(p.saleAt)), el("td", { class: "num" }, fmt(p.price)),
					el("td", { class: "num" }, fmt(p.stock)), el("td", { class: "num" }, fmt(p.remaining)), el("td", {}, p.status),
					el("td", { class: "num", "data-role": "waiting" }, fmt(waiting[p.id] || 0)),
					el("td", {}, el("a", { href: `/admin/sales/${p.id}` }, "Report")), el("td", {}, edit));
			});
			const id = `group-${key}`;
			return el("div", { class: "group", "data-group": key },
				el("h3", { id }, `${title} (${rows.length})`),
				rows.length
					? el("table", { "aria-labelledby": id },
						el("thead", {}, el("tr", {}, ...["Product", "Sale time", "Price", "Stock", "Remaining", "Status", "Waiting", "Report", "Edit"].map((h, i) => el("th", (i >= 2 && i <= 4) || i === 6 ? { class: "num" } : {}, h)))),
						el("tbody", {}, ...rows))
					: el("p", { class: "muted" }, "None."));
		}));
	}

	function startEdit(p) {
		editing = p;
		$("form-h").textContent = `Edit “${p.name}”`;
		$("name").value = p.name;
		$("description").value = p.description || "";
		$("price").value = String(p.price);
		$("stock").value = String(p.stock);
		$("saleAt").value = localOf(Date.parse(p.saleAt));
		$("save").textContent = "Save";
		$("cancel").hidden = false;
		$("delete").hidden = false;
		$("form-error").textContent = "";
		$("form-ok").textContent = "";
		$("name").focus();
	}

	function startNew() {
		editing = null;
		$("product-form").reset();
		$("form-h").textContent = "New product";
		$("saleAt").value = nextTen();
		$("save").textContent = "Create";
		$("cancel").hidden = true;
		$("delete").hidden = true;
	}

	/** What the form asks for, or a sentence saying what is wrong with it. */
	function read() {
		const name = $("name").value.trim();
		const price = Number($("price").value);
		const stock = Number($("stock").value);
		const saleAt = instantOf($("saleAt").value);
		if (!name) return "Give the product a name.";
		if ($("price").value === "" || !Number.isFinite(price) || price < 0) return "The price must be a number, 0 or more.";
		if ($("stock").value === "" || !Number.isInteger(stock) || stock < 0) return "The stock must be a whole number, 0 or more.";
		if (Number.isNaN(saleAt)) return "Choose a sale time.";
		const moved = !editing || saleAt !== Date.parse(editing.saleAt);
		// A sale opening in the past would open the moment it is saved: the page asks for a future time.
		if (moved && saleAt <= Date.now()) return "The sale time is in the past: choose a time to come.";
		return { name, description: $("description").value, price, stock, saleAt: new Date(saleAt).toISOString(), moved };
	}

	async function save(ev) {
		ev.preventDefault();
		$("form-error").textContent = "";
		$("form-ok").textContent = "";
		const f = read();
		if (typeof f === "string") return void ($("form-error").textContent = f);
		const { moved, ...fields } = f;
		const res = editing
			? await call("PATCH", `/api/admin/products/${encodeURIComponent(editing.id)}`, {
				name: fields.name, description: fields.description, price: fields.price,
				...(fields.stock !== editing.stock ? { stock: fields.stock } : {}), ...(moved ? { saleAt: fields.saleAt } : {}),
			})
			: await call("POST", "/api/admin/products", fields);
		if (!res.ok) return void ($("form-error").textContent = explain(res.status, res.body));
		$("form-ok").textContent = editing ? `Saved “${res.body.product.name}”.` : `Created “${res.body.product.name}”.`;
		startNew();
		load();
	}

	async function remove() {
		if (!editing || !window.confirm(`Delete “${editing.name}”?`)) return;
		const res = await call("DELETE", `/api/admin/products/${encodeURIComponent(editing.id)}`);
		if (!res.ok) return void ($("form-error").textContent = explain(res.status, res.body));
		$("form-ok").textContent = `Deleted “${editing.name}”.`;
		startNew();
		load();
	}

	$("product-form").addEventListener("submit", save);
	$("cancel").addEventListener("click", () => { startNew(); $("form-error").textContent = ""; });
	$("delete").addEventListener("click", remove);
	Admin.start(async () => {
		const t = await call("GET", "/api/time");
		if (t.ok && t.body.timeZone) zone = t.body.timeZone;
		$("zone").textContent = zone;
		startNew();
		load();
	});
})();
