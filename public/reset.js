/*
 * `/reset?token=`: the page the reset e-mail links to. The token leaves the address bar at once
 * (it should not stay in the history or be shared by a copied link) and is sent once, with the new
 * password. Afterwards the page links back to where the buyer asked for the reset.
 */
"use strict";
(function () {
	const S = window.Store;
	const { t, say } = S;
	const form = document.getElementById("reset-form");
	const message = document.getElementById("reset-message");
	const token = new URLSearchParams(location.search).get("token") || "";
	if (location.search) history.replaceState(null, "", location.pathname);

	let back = "/";
	try {
		const r = localStorage.getItem("dopamine.returnTo");
		if (r && /^\/p\/[^/]+$/.test(r)) back = r;
	} catch (_) {
		/* no storage: back to the shop */
	}
	document.getElementById("continue").setAttribute("href", back);

	if (!token) {
		form.hidden = true;
		say(message, t("resetNoToken"), "bad");
	}

	form.addEventListener("submit", async e => {
		e.preventDefault();
		const password = form.password.value;
		if (password !== form.repeat.value) return say(message, t("resetMismatch"), "bad");
		for (const x of form.elements) x.disabled = true;
		const r = await S.request("POST", "/api/auth/password/reset", { body: { token, password } });
		for (const x of form.elements) x.disabled = false;
		if (r.status === 204) {
			form.reset();
			form.hidden = true;
			S.session.clear();
			say(message, t("resetDone"), "ok");
			document.getElementById("continue").focus();
		} else if (r.body && r.body.type === "INVALID_TOKEN") {
			form.hidden = true;
			say(message, t("resetBad"), "bad");
		} else {
			say(message, S.accountError(r), "bad");
		}
	});
})();
