"use strict";
/**
 * Shared by the admins' pages: the sign-in form, the admin's token (kept for this tab only) and
 * JSON calls with it. A page calls Admin.start(render) and gets render() once signed in as an admin.
 */
(function () {
	const KEY = "dopamine.admin.token";
	const Admin = {
		token: () => sessionStorage.getItem(KEY),

		async api(path, init) {
			const res = await fetch(path, { ...init, headers: { ...(init && init.headers), authorization: `Bearer ${Admin.token()}` } });
			const text = await res.text();
			let body = null;
			try { body = text ? JSON.parse(text) : null; } catch { body = text; }
			if (res.status === 401 || res.status === 403) {
				if (res.status === 401) sessionStorage.removeItem(KEY);
				Admin.showLogin(res.status === 403 ? "This account is not an administrator." : "Please sign in again.");
				throw new Error(`HTTP ${res.status}`);
			}
			if (!res.ok) throw new Error((body && body.message) || `HTTP ${res.status}`);
			return body;
		},

		showLogin(message) {
			document.getElementById("login").hidden = false;
			document.getElementById("app").hidden = true;
			document.getElementById("login-error").textContent = message || "";
		},

		start(render) {
			const form = document.getElementById("login-form");
			form.addEventListener("submit", async ev => {
				ev.preventDefault();
				const data = new FormData(form);
				const res = await fetch("/api/auth/login", {
					method: "POST",
					headers: { "content-type": "application/json" },
					body: JSON.stringify({ loginId: data.get("loginId"), password: data.get("password") }),
				});
				const body = await res.json().catch(() => null);
				if (!res.ok) return Admin.showLogin((body && body.message) || "Sign-in failed.");
				sessionStorage.setItem(KEY, body.accessToken);
				form.reset();
				go();
			});
			document.getElementById("sign-out").addEventListener("click", () => {
				sessionStorage.removeItem(KEY);
				Admin.showLogin("");
			});
			const go = () => {
				document.getElementById("login").hidden = true;
				document.getElementById("app").hidden = false;
				render();
			};
			if (Admin.token()) go();
			else Admin.showLogin("");
		},

		el(tag, attrs, ...children) {
			const e = document.createElement(tag);
			for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
			for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
			return e;
		},

		fmt(n) {
			return n === null || n === undefined ? "–" : typeof n === "number" ? n.toLocaleString("en-US") : String(n);
		},

		time(iso) {
			return iso ? new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";
		},

		outcomes(map) {
			const entries = Object.entries(map || {}).filter(([, n]) => n > 0);
			return entries.length ? entries.map(([k, n]) => `${k} ${Admin.fmt(n)}`).join(", ") : "–";
		},
	};
	window.Admin = Admin;
})();
