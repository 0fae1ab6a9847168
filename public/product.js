/*
 * `/p/:id`: one product's purchase page.
 * - sign up or sign in (the token stays in this browser);
 * - a countdown to saleAt by the server's clock; the buy button opens at that second, not before;
 * - one claim per press (a double-click sends one); 429 and 503 are retried only after their
 *   Retry-After, with jitter, a few times; the answer in plain words with the place in line;
 * - the slot and its time left, live; payment by a method of the payments registry (GET
 *   /api/payment-methods; Idempotency-Key, then confirm); the receipt; the buyer's slots and payments.
 */
"use strict";
(function () {
	const S = window.Store;
	const { t, fmt, el, say, serverNow, session } = S;
	const $ = id => document.getElementById(id);

	const productId = decodeURIComponent(location.pathname.split("/")[2] || "");
	const MAX_RETRIES = 8;
	const state = {
		product: null,
		/** The payment methods (GET /api/payment-methods), in the registry's order. */
		methods: [],
		slots: [],
		payments: [],
		names: {},
		claiming: false,
		retries: 0,
		paying: false,
		openingTimer: null,
		nearSynced: false,
		opened: false,
		warnedSlot: null,
		expiredSlot: null,
	};

	// ---- product ------------------------------------------------------------------------------
	const saleAtMs = () => Date.parse(state.product.saleAt);
	const isOpen = () => serverNow() >= saleAtMs();
	function productState() {
		if (!isOpen()) return "SCHEDULED";
		return state.product.remaining > 0 ? "ON_SALE" : "SOLD_OUT";
	}

	async function loadProduct() {
		const r = await S.request("GET", `/api/products/${encodeURIComponent(productId)}`);
		if (r.status === 200) {
			state.product = r.body.product;
			state.names[state.product.id] = state.product.name;
			return true;
		}
		$("loading").hidden = true;
		say($("page-message"), r.status === 404 ? t("productNotFound") : t("loadFailed"), "bad");
		return false;
	}

	/** The payment methods, from the payments registry: the page names none of them itself. */
	async function loadMethods() {
		const r = await S.request("GET", "/api/payment-methods");
		if (r.status !== 200) return false;
		state.methods = r.body.methods;
		$("pay-methods").replaceChildren(
			...state.methods.map((m, i) => {
				const input = el("input", { type: "radio", name: "method", value: m.method });
				input.checked = i === 0;
				input.addEventListener("change", onMethodChange);
				return el("label", { class: "choice" }, input, " ", el("span", {}, methodName(m.method)));
			})
		);
		$("method-fields").replaceChildren(...state.methods.filter(m => m.inputs.length).map(methodFields));
		onMethodChange();
		return true;
	}

	/**
	 * A method's own fields, as its provider describes them: a label (with its hint) in the buyer's
	 * words, then a list for a field with choices or a text input. Ids are made of the method's and
	 * the field's keys, so a new method needs nothing in this page.
	 */
	function methodFields(m) {
		const words = w => w[S.lang] || w.en;
		const block = el("div", { id: `${m.method}-fields`, "data-method-fields": m.method });
		for (const f of m.inputs) {
			const id = `${m.method}-${f.name}`;
			const hintId = f.hints ? `${id}-hint` : null;
			const label = el("label", { for: id }, el("span", {}, words(f.labels)));
			if (hintId) label.append(" ", el("span", { class: "hint", id: hintId }, words(f.hints)));
			const input = f.choices
				? el("select", { id, name: f.name }, ...f.choices.map(c => el("option", { value: c.value }, words(c.names))))
				: el("input", { id, name: f.name, "data-digits": f.digits, inputmode: f.digits ? "numeric" : null, autocomplete: f.autocomplete, maxlength: f.maxLength, "aria-describedby": hintId });
			block.append(label, input);
		}
		return block;
	}

	const methodOf = key => state.methods.find(m => m.method === key);
	const methodName = key => {
		const m = methodOf(key);
		return m ? m.names[S.lang] || m.names.en : key;
	};

	function renderProduct() {
		const p = state.product;
		$("loading").hidden = true;
		$("product").hidden = false;
		$("product-name").textContent = p.name;
		document.title = `${p.name} · ${t("brand")}`;
		$("product-description").textContent = p.description || "";
		$("product-description").hidden = !p.description;
		$("price").textContent = fmt.money(p.price);
		$("sale-at").textContent = fmt.when(p.saleAt);
		$("sale-at").setAttribute("datetime", p.saleAt);
		$("remaining").textContent = t("leftOf", { n: p.remaining, stock: p.stock });
		const st = productState();
		$("product-status").dataset.status = st;
		$("product-status").textContent = t("status" + st);
		renderCountdown();
	}

	function renderCountdown() {
		const left = saleAtMs() - serverNow();
		$("countdown").textContent = left > 0 ? t("opensIn", { t: fmt.duration(left, true) }) : productState() === "SOLD_OUT" ? t("soldOutNow") : t("openNow");
	}

	/** Opens the button at saleAt by the server's clock: a timer re-armed until the second comes. */
	function armOpening() {
		clearTimeout(state.openingTimer);
		const ms = saleAtMs() - serverNow();
		if (ms <= 0) {
			if (!state.opened) {
				state.opened = true;
				renderProduct();
				renderBuy();
				renderNotify();
				if (!state.claiming && !activeSlot()) say($("claim-message"), t("saleOpened"), "ok");
			}
			return;
		}
		state.opened = false;
		// A page left open for a long time re-reads the server's clock shortly before the opening.
		if (ms < 60_000 && ms > 5_000 && !state.nearSynced) {
			state.nearSynced = true;
			S.syncClock(3).then(armOpening);
			return;
		}
		state.openingTimer = setTimeout(armOpening, Math.min(ms, 30_000));
	}

	// ---- account ------------------------------------------------------------------------------
	function renderAccount() {
		const s = session.get();
		$("account").hidden = !!s;
		$("who").hidden = !s;
		$("who-name").textContent = s ? t("signedInAs", { who: (s.user && s.user.loginId) || "" }) : "";
		$("history").hidden = !s;
	}

	function showForm(which, focus = true) {
		for (const f of ["login", "signup", "forgot"]) $(`${f}-form`).hidden = f !== which;
		$("show-signup").hidden = which === "signup";
		$("show-login").hidden = which === "login";
		$("show-forgot").hidden = which === "forgot";
		say($("account-message"), "");
		const first = $(`${which}-form`).querySelector("input");
		if (first && focus) first.focus();
	}

	async function afterSignIn() {
		renderAccount();
		await Promise.all([loadMine(), loadNotify()]);
		renderAll();
		$("buy").focus();
	}

	function busyForm(form, busy) {
		for (const b of form.querySelectorAll("button, input")) b.disabled = busy;
	}

	async function onLogin(e) {
		e.preventDefault();
		const form = e.target;
		busyForm(form, true);
		const err = await S.signIn(form.loginId.value.trim(), form.password.value);
		busyForm(form, false);
		if (err) return say($("account-message"), err, "bad");
		form.reset();
		await afterSignIn();
	}

	async function onSignup(e) {
		e.preventDefault();
		const form = e.target;
		const loginId = form.loginId.value.trim();
		const password = form.password.value;
		busyForm(form, true);
		const r = await S.request("POST", "/api/auth/signup", { body: { loginId, email: form.email.value.trim(), password } });
		let err = r.status === 201 ? await S.signIn(loginId, password) : S.accountError(r);
		busyForm(form, false);
		if (err) return say($("account-message"), err, "bad");
		form.reset();
		await afterSignIn();
	}

	async function onForgot(e) {
		e.preventDefault();
		const form = e.target;
		busyForm(form, true);
		const r = await S.request("POST", "/api/auth/password/forgot", { body: { email: form.email.value.trim() } });
		busyForm(form, false);
		if (r.status !== 202) return say($("account-message"), S.accountError(r), "bad");
		// The reset page offers the way back here.
		try {
			localStorage.setItem("dopamine.returnTo", location.pathname);
		} catch (_) {
			/* private mode: the reset page links to the shop instead */
		}
		say($("account-message"), t("forgotSent"), "ok");
	}

	function signedOut(reason, focus = false) {
		session.clear();
		state.slots = [];
		state.payments = [];
		renderAccount();
		showForm("login", focus);
		renderAll();
		if (reason) say($("account-message"), reason, "bad");
	}

	// ---- claim --------------------------------------------------------------------------------
	/** The buyer's slot for this product: the active one (HELD or PAID), else the newest. */
	function activeSlot() {
		return state.slots.find(s => s.productId === productId && (statusOf(s) === "HELD" || s.status === "PAID")) || null;
	}
	/** A held slot whose time ran out is expired, by the server's clock, before the server's sweep says so. */
	function statusOf(slot) {
		return slot.status === "HELD" && Date.parse(slot.expiresAt) <= serverNow() ? "EXPIRED" : slot.status;
	}
	function shownSlot() {
		return activeSlot() || state.slots.find(s => s.productId === productId) || null;
	}

	function renderBuy() {
		if (!state.product) return;
		$("buy-box").hidden = false;
		const b = $("buy");
		if (state.claiming) {
			b.disabled = true;
			b.textContent = t("buying");
		} else if (activeSlot()) {
			b.disabled = true;
			b.textContent = t("youHaveOne");
		} else if (!isOpen()) {
			b.disabled = true;
			b.textContent = t("buyOpensAt", { time: fmt.when(state.product.saleAt) });
		} else {
			b.disabled = false;
			b.textContent = t("buy");
		}
	}

	/** "Notify me" (알림 신청): a signed-in buyer, before the opening, asks for an e-mail ahead of it. */
	function renderNotify() {
		const n = $("notify-me");
		n.hidden = !session.token() || isOpen() || !state.notify;
		if (n.hidden) return;
		n.textContent = state.notify.waiting ? t("notifyMeOff") : t("notifyMe");
		n.setAttribute("aria-pressed", String(!!state.notify.waiting));
	}

	async function loadNotify() {
		state.notify = null;
		if (!session.token() || isOpen()) return;
		const r = await S.authed("GET", `/api/products/${encodeURIComponent(productId)}/notify-me`);
		if (r.status === 200) state.notify = r.body;
	}

	async function onNotify() {
		if (!state.notify) return;
		const r = await S.authed(state.notify.waiting ? "DELETE" : "POST", `/api/products/${encodeURIComponent(productId)}/notify-me`);
		if (r.status === 200 || r.status === 201) {
			state.notify = r.body;
			say($("claim-message"), r.body.waiting ? t("notifyMeOn", { time: fmt.when(r.body.notifyAt) }) : t("notifyMeStopped"), "ok");
		} else say($("claim-message"), (r.body && r.body.message) || t("serverError"), "bad");
		renderNotify();
	}

	async function onBuy() {
		// One press, one claim: the button is disabled while its claim is out, and this guard
		// catches a second click that lands before the browser repaints.
		if (state.claiming || activeSlot() || !isOpen()) return;
		if (!session.token()) {
			signedOut();
			say($("account-message"), t("signInFirst"), "bad");
			$("login-id").focus();
			return;
		}
		state.claiming = true;
		state.retries = 0;
		say($("claim-message"), "");
		renderBuy();
		await claimOnce();
	}

	async function claimOnce() {
		const r = await S.authed("POST", `/api/products/${encodeURIComponent(productId)}/slots`);
		const type = r.body && r.body.type;
		const data = (r.body && r.body.data) || {};
		if (r.status === 429 || r.status === 503 || r.status === 0) {
			// Retry only after Retry-After, with jitter; a lost answer is safe to retry (one per buyer).
			if (state.retries < MAX_RETRIES) {
				state.retries += 1;
				const wait = S.backoffMs(r.retryAfter);
				// Said once per retry (a status region that changed every second would chatter).
				say($("claim-message"), t("busy", { s: Math.ceil(wait / 1000) }), "wait");
				setTimeout(claimOnce, wait);
				return;
			}
			state.claiming = false;
			say($("claim-message"), t("busyGaveUp"), "bad");
			return renderBuy();
		}
		state.claiming = false;
		if (r.status === 201) {
			upsertSlot(r.body.slot);
			const seq = r.body.slot.seq;
			say($("claim-message"), seq != null ? t("granted", { seq }) : t("grantedNoSeq"), "ok");
			refreshProductSoon();
		} else if (type === "SOLD_OUT") {
			state.product.remaining = 0;
			say($("claim-message"), data.seq != null ? t("soldOut", { seq: data.seq }) : t("soldOutNoSeq"), "bad");
		} else if (type === "ALREADY_HOLDING") {
			if (data.slot) upsertSlot(data.slot);
			say($("claim-message"), t("already"), "ok");
		} else if (type === "SALE_NOT_OPEN") {
			if (data.saleAt) state.product.saleAt = data.saleAt;
			await S.syncClock(3);
			armOpening();
			say($("claim-message"), t("notOpen", { time: fmt.when(state.product.saleAt) }), "wait");
		} else if (r.status === 401) {
			signedOut(t("sessionEnded"));
		} else if (r.status === 404) {
			say($("claim-message"), t("productNotFound"), "bad");
		} else {
			say($("claim-message"), t("serverError"), "bad");
		}
		renderAll();
	}

	let productTimer = null;
	function refreshProductSoon() {
		clearTimeout(productTimer);
		productTimer = setTimeout(async () => {
			const r = await S.request("GET", `/api/products/${encodeURIComponent(productId)}`);
			if (r.status === 200) {
				state.product = r.body.product;
				renderProduct();
			}
		}, 500 + Math.random() * 1500);
	}

	// ---- slot and payment ---------------------------------------------------------------------
	function upsertSlot(slot) {
		state.slots = [slot, ...state.slots.filter(s => s.id !== slot.id)];
	}
	function upsertPayment(p) {
		state.payments = [p, ...state.payments.filter(x => x.id !== p.id)];
	}

	async function loadMine() {
		if (!session.token()) return;
		const [slots, payments] = await Promise.all([S.authed("GET", "/api/me/slots"), S.authed("GET", "/api/me/payments")]);
		if (slots.status === 401 || payments.status === 401) return signedOut(t("sessionEnded"));
		if (slots.status === 200) state.slots = slots.body.slots;
		if (payments.status === 200) state.payments = payments.body.payments;
		const unknown = state.slots.some(s => !state.names[s.productId]);
		if (unknown) {
			const r = await S.request("GET", "/api/products");
			if (r.status === 200) for (const p of r.body.products) state.names[p.id] = p.name;
		}
	}

	function renderSlot() {
		const slot = shownSlot();
		$("slot").hidden = !slot;
		if (!slot) return;
		const status = statusOf(slot);
		$("slot-status").dataset.status = status;
		$("slot-status").textContent = t("slot" + status);
		$("slot-seq").textContent = slot.seq != null ? `#${slot.seq}` : "–";
		const held = status === "HELD";
		$("pay-form").hidden = !held;
		$("pay").textContent = state.paying ? t("paying") : t("pay", { amount: fmt.money(state.product.price) });
		$("pay").disabled = state.paying;
		renderTimer();
		const paid = slot.status === "PAID" ? state.payments.find(p => p.slotId === slot.id && p.status === "SUCCESS") : null;
		$("receipt").hidden = !paid;
		if (paid)
			$("receipt-facts").replaceChildren(
				el("dt", {}, t("receiptNo")),
				el("dd", {}, paid.id),
				el("dt", {}, t("product")),
				el("dd", {}, state.product.name),
				el("dt", {}, t("amount")),
				el("dd", {}, fmt.money(paid.amount)),
				el("dt", {}, t("method")),
				el("dd", {}, methodName(paid.method)),
				el("dt", {}, t("status")),
				el("dd", {}, t("pay" + paid.status))
			);
	}

	function renderTimer() {
		const slot = shownSlot();
		if (!slot) return;
		const left = Date.parse(slot.expiresAt) - serverNow();
		const held = slot.status === "HELD";
		const running = held && left > 0;
		$("slot-timer-label").hidden = !running;
		$("slot-timer").parentElement.hidden = !running;
		if (running) $("slot-timer").textContent = fmt.duration(left);
		if (running && left <= 5 * 60_000 && state.warnedSlot !== slot.id && Date.parse(slot.expiresAt) - Date.parse(slot.heldAt) > 5 * 60_000) {
			state.warnedSlot = slot.id;
			say($("slot-message"), t("fiveMinutes"), "wait");
		}
		if (held && !running && state.expiredSlot !== slot.id) {
			// The server expires it (and puts the unit back on sale): show it now, then read the truth.
			state.expiredSlot = slot.id;
			say($("slot-message"), t("slotExpiredNow"), "bad");
			renderAll();
			setTimeout(() => loadMine().then(renderAll), 1500);
			refreshProductSoon();
		}
	}

	function selectedMethod() {
		const checked = $("pay-form").querySelector("input[name=method]:checked");
		return checked ? checked.value : "";
	}

	function onMethodChange() {
		const m = selectedMethod();
		// A method with fields of its own has a [data-method-fields] block; the others show none.
		for (const f of document.querySelectorAll("[data-method-fields]")) f.hidden = f.getAttribute("data-method-fields") !== m;
	}

	/**
	 * A method field's name in the page's own words: its label, with its hint in brackets ("Card
	 * number (12 to 19 digits)"); the field's name when the page has no input for it.
	 */
	function fieldLabel(name) {
		const input = document.querySelector(`[data-method-fields] [name="${name}"]`);
		const label = input && input.id && document.querySelector(`label[for="${input.id}"]`);
		if (!label) return name;
		const hint = input.getAttribute("aria-describedby") ? $(input.getAttribute("aria-describedby")) : null;
		const own = [...label.childNodes].filter(n => n !== hint).map(n => n.textContent).join("").trim();
		return hint ? `${own} (${hint.textContent.trim()})` : own;
	}

	function payError(r) {
		const type = r.body && r.body.type;
		if (r.status === 0) return t("networkError");
		if (r.status === 401) return t("sessionEnded");
		if (type === "SLOT_EXPIRED") return t("payExpired");
		if (type === "SLOT_NOT_HELD") return t("notHeld");
		if (r.status === 422 || r.status === 400) {
			const list = (r.body && r.body.data && (Array.isArray(r.body.data) ? r.body.data : r.body.data.fields)) || [];
			const fields = [...new Set(list.map(d => d && d.field).filter(Boolean))];
			if (fields.length) return t("checkFields", { fields: fields.map(fieldLabel).join(", ") });
		}
		return S.accountError(r);
	}

	async function onPay(e) {
		e.preventDefault();
		const slot = activeSlot();
		if (state.paying || !slot || slot.status !== "HELD") return;
		const method = selectedMethod();
		const body = { method };
		// The method's own fields are the named inputs of its [data-method-fields] block; a
		// data-digits input drops the spaces and dashes people type in card numbers.
		const block = document.querySelector(`[data-method-fields="${method}"]`);
		for (const input of block ? block.querySelectorAll("[name]") : [])
			body[input.name] = input.hasAttribute("data-digits") ? input.value.replace(/[\s-]/g, "") : input.value;
		state.paying = true;
		say($("pay-message"), "");
		renderSlot();
		// One key per press: a lost answer is retried with the same key and finds the same payment.
		const key = S.randomKey();
		const start = () => S.authed("POST", `/api/slots/${encodeURIComponent(slot.id)}/payments`, { body, headers: { "idempotency-key": key } });
		let r = await start();
		if (r.status === 0) r = await start();
		if (r.status === 201) {
			const payment = r.body.payment;
			upsertPayment(payment);
			let c = await S.authed("POST", `/api/payments/${encodeURIComponent(payment.id)}/confirm`);
			if (c.status === 0) c = await S.authed("POST", `/api/payments/${encodeURIComponent(payment.id)}/confirm`);
			r = c;
			if (c.status === 200) {
				upsertPayment(c.body.payment);
				slot.status = "PAID";
				// What was typed for the method (a card number) is not left on the screen.
				for (const input of document.querySelectorAll("[data-method-fields] input")) input.value = "";
				say($("claim-message"), "");
				say($("pay-message"), t("paid"), "ok");
			} else if (c.body && c.body.data && c.body.data.payment) {
				upsertPayment(c.body.data.payment);
			}
		}
		state.paying = false;
		if (r.status !== 200) {
			const type = r.body && r.body.type;
			const msg = type === "PAYMENT_DECLINED" || type === "PAYMENT_FAILED" ? (methodOf(method) && methodOf(method).spendsPoints ? t("pointsShort") : t("declined")) : payError(r);
			say($("pay-message"), msg, "bad");
			if (r.status === 401) signedOut(t("sessionEnded"));
			if (type === "SLOT_EXPIRED" || type === "SLOT_NOT_HELD") await loadMine();
		}
		renderAll();
		if (r.status === 200) $("receipt").focus();
	}

	// ---- history ------------------------------------------------------------------------------
	function renderHistory() {
		const body = $("history-body");
		if (!session.get()) return body.replaceChildren();
		if (state.slots.length === 0) return body.replaceChildren(el("p", { class: "muted" }, t("noHistory")));
		const name = id => state.names[id] || `#${id}`;
		const slotRows = state.slots.map(s =>
			el(
				"tr",
				{ "data-slot": s.id },
				el("td", {}, s.productId === productId ? name(s.productId) : el("a", { href: `/p/${encodeURIComponent(s.productId)}` }, name(s.productId))),
				el("td", {}, el("span", { class: "badge", "data-status": statusOf(s) }, t("slot" + statusOf(s)))),
				el("td", {}, s.seq != null ? `#${s.seq}` : "–")
			)
		);
		const productOfSlot = id => {
			const s = state.slots.find(x => x.id === id);
			return s ? name(s.productId) : "";
		};
		const payRows = state.payments.map(p =>
			el(
				"tr",
				{ "data-payment": p.id },
				el("td", {}, productOfSlot(p.slotId)),
				el("td", { class: "num" }, fmt.money(p.amount)),
				el("td", {}, methodName(p.method)),
				el("td", {}, el("span", { class: "badge", "data-status": p.status }, t("pay" + p.status)))
			)
		);
		const table = (caption, heads, rows) =>
			el("table", {}, el("caption", { class: "muted" }, caption), el("thead", {}, el("tr", {}, ...heads.map(h => el("th", { scope: "col" }, h)))), el("tbody", {}, ...rows));
		body.replaceChildren(
			table(t("slots"), [t("product"), t("status"), t("placeInLine")], slotRows),
			payRows.length ? table(t("payments"), [t("product"), t("amount"), t("method"), t("status")], payRows) : ""
		);
	}

	function renderAll() {
		if (!state.product) return;
		renderProduct();
		renderBuy();
		renderNotify();
		renderSlot();
		renderHistory();
	}

	// ---- start --------------------------------------------------------------------------------
	$("login-form").addEventListener("submit", onLogin);
	$("signup-form").addEventListener("submit", onSignup);
	$("forgot-form").addEventListener("submit", onForgot);
	$("show-signup").addEventListener("click", () => showForm("signup"));
	$("show-login").addEventListener("click", () => showForm("login"));
	$("show-forgot").addEventListener("click", () => showForm("forgot"));
	$("sign-out").addEventListener("click", () => signedOut(undefined, true));
	$("buy").addEventListener("click", onBuy);
	$("notify-me").addEventListener("click", onNotify);
	$("pay-form").addEventListener("submit", onPay);

	async function start() {
		renderAccount();
		const [synced, found, methods] = await Promise.all([S.syncClock(3), loadProduct(), loadMethods()]);
		if (!found) return;
		if (!synced || !methods) say($("page-message"), t("loadFailed"), "bad");
		await Promise.all([loadMine(), loadNotify()]);
		renderAll();
		armOpening();
		// Redrawn when a countdown's seconds change: each flips on its own deadline's fraction of a
		// second (saleAt, the slot's expiry), not on the clock's whole seconds, which could leave the
		// shown time a second behind.
		let lastShown = "";
		setInterval(() => {
			const now = serverNow();
			const slot = shownSlot();
			const shown = `${Math.ceil((saleAtMs() - now) / 1000)}|${slot ? Math.ceil((Date.parse(slot.expiresAt) - now) / 1000) : ""}`;
			if (shown === lastShown) return;
			lastShown = shown;
			renderCountdown();
			renderTimer();
		}, 200);
		// While the sale runs, units left are re-read now and then (jittered, visible pages only).
		setInterval(() => {
			if (document.visibilityState === "visible" && isOpen() && state.product.remaining > 0) refreshProductSoon();
		}, 60_000);
		document.documentElement.dataset.ready = "true";
	}
	start();
})();
