"use strict";
/** The local mailbox: e-mail deliveries from GET /api/admin/notifications?channel=email. */
(function () {
	const { el, fmt } = Admin;
	const $ = id => document.getElementById(id);
	let page = 1;

	function show(d) {
		$("reader").hidden = false;
		$("reader-subject").textContent = d.subject;
		$("reader-to").textContent = `to ${d.recipient}, ${Admin.time(d.sentAt || d.createdAt)}`;
		$("reader-text").textContent = d.text;
	}

	async function resend(d) {
		try {
			await Admin.api(`/api/admin/notifications/${encodeURIComponent(d.id)}/resend`, { method: "POST" });
			load();
		} catch (err) {
			$("error").textContent = `Could not resend: ${err.message}`;
		}
	}

	async function load() {
		const status = $("status").value;
		const q = new URLSearchParams({ channel: "email", page: String(page) });
		if (status) q.set("status", status);
		try {
			const { notifications } = await Admin.api(`/api/admin/notifications?${q}`);
			$("error").textContent = "";
			$("page").textContent = `page ${page}`;
			$("mails").replaceChildren(
				...(notifications.length
					? notifications.map(d => {
						const open = el("button", { type: "button", class: "link" }, d.subject);
						open.addEventListener("click", () => show(d));
						const again = el("button", { type: "button" }, "Resend");
						again.addEventListener("click", () => resend(d));
						return el("tr", { "data-delivery": d.id },
							el("td", {}, Admin.time(d.createdAt)), el("td", {}, d.recipient), el("td", {}, open), el("td", {}, d.kind),
							el("td", {}, d.status), el("td", { class: "num" }, fmt(d.attempts)), el("td", {}, d.lastError || ""), el("td", {}, again));
					})
					: [el("tr", {}, el("td", { colspan: "8", class: "muted" }, "No e-mail here."))])
			);
		} catch (err) {
			if (!/HTTP 40[13]/.test(err.message)) $("error").textContent = `Could not load the mailbox: ${err.message}`;
		}
	}

	/** POST /api/admin/notifications/resend-failed with the form's filters (times read as UTC). */
	async function resendFailed(ev) {
		ev.preventDefault();
		$("bulk-error").textContent = "";
		$("bulk-ok").textContent = "";
		const body = {};
		const kind = $("bulk-kind").value.trim();
		if (kind) body.kind = kind;
		for (const k of ["since", "until"]) if ($(`bulk-${k}`).value) body[k] = `${$(`bulk-${k}`).value}Z`;
		try {
			const r = await Admin.api("/api/admin/notifications/resend-failed", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
			$("bulk-ok").textContent = `${fmt(r.resent)} failed deliver${r.resent === 1 ? "y" : "ies"} queued to be sent again.`;
			load();
		} catch (err) {
			$("bulk-error").textContent = `Could not resend: ${err.message}`;
		}
	}

	$("bulk-form").addEventListener("submit", resendFailed);
	$("status").addEventListener("change", () => ((page = 1), load()));
	$("prev").addEventListener("click", () => { if (page > 1) { page -= 1; load(); } });
	$("next").addEventListener("click", () => ((page += 1), load()));
	Admin.start(load);
})();
