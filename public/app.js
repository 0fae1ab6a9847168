/*
 * Dopamine Store: what every page shares. Plain JavaScript, no build step.
 * - words in Korean or English, following the browser's language;
 * - the JSON API, with the contract's error shape;
 * - the server's clock (GET /api/time, corrected for the round trip), never the phone's;
 * - the buyer's session (the access token, in this browser only).
 * Nothing here writes HTML from data: text goes through textContent.
 */
"use strict";
(function () {
	const WORDS = {
		en: {
			brand: "Dopamine Store",
			skip: "Skip to content",
			loading: "Loading…",
			shopTitle: "Today's drops",
			shopIntro: "Limited stock, first come, first served. Each product has its own page.",
			noProducts: "Nothing is on sale yet. Come back at 10:00.",
			price: "Price",
			saleAt: "Sale opens",
			left: "Left",
			leftOf: "{n} of {stock} left",
			statusSCHEDULED: "Scheduled",
			statusON_SALE: "On sale",
			statusSOLD_OUT: "Sold out",
			opensIn: "Opens in {t}",
			openNow: "On sale now",
			soldOutNow: "Sold out",
			dayShort: "{d} d",
			loadFailed: "Could not load. Check your connection; trying again shortly.",
			productNotFound: "This product does not exist (any more).",
			backToShop: "All products",
			// account
			account: "Your account",
			signIn: "Sign in",
			signUp: "Create an account",
			signOut: "Sign out",
			signedInAs: "Signed in as {who}",
			loginId: "Login id",
			loginIdHint: "4 to 32 letters, digits, '_', '.' or '-'",
			password: "Password",
			passwordHint: "At least 8 characters",
			newPassword: "New password",
			repeatPassword: "New password again",
			email: "E-mail",
			needAccount: "New here? Create an account",
			haveAccount: "Have an account? Sign in",
			forgot: "Forgot your password?",
			forgotTitle: "Reset your password",
			forgotSend: "Send me a reset link",
			forgotSent: "If an account uses this address, a reset link is on its way. It works for 30 minutes.",
			signInFirst: "Sign in or create an account to buy.",
			badCredentials: "Login id or password is wrong.",
			loginIdTaken: "That login id is taken. Pick another.",
			tooMany: "Too many attempts. Try again in {s} s.",
			checkFields: "Please check: {fields}.",
			fieldloginId: "login id (4–32 letters, digits, '_', '.', '-')",
			fieldpassword: "password (8–128 characters)",
			fieldemail: "e-mail address",
			sessionEnded: "Your session ended. Please sign in again.",
			networkError: "No answer from the store. Check your connection and try again.",
			serverError: "Something went wrong on our side. Try again in a moment.",
			// claim
			buy: "Buy now",
			buyOpensAt: "Opens at {time}",
			notifyMe: "Notify me before it opens",
			notifyMeOff: "Stop the reminder",
			notifyMeOn: "We will e-mail you at {time}, before the sale opens.",
			notifyMeStopped: "Reminder withdrawn.",
			buying: "Asking for your place…",
			youHaveOne: "You have this one",
			saleOpened: "The sale is open.",
			granted: "You got it! Your place in line: #{seq}. Pay before the timer runs out.",
			grantedNoSeq: "You got it! Pay before the timer runs out.",
			soldOut: "Sold out. Your place in line was #{seq}; every unit went to someone earlier.",
			soldOutNoSeq: "Sold out. Every unit is taken.",
			already: "You already have one of these (see below).",
			notOpen: "Not open yet. It opens at {time}.",
			busy: "The store is busy. Trying again in {s} s…",
			busyGaveUp: "The store is still busy. Press the button to try again.",
			// slot
			yourSlot: "Your slot",
			slotHELD: "Held for you",
			slotPAID: "Paid",
			slotEXPIRED: "Expired",
			placeInLine: "Place in line",
			timeLeft: "Time left to pay",
			slotExpiredNow: "Your slot expired and went back on sale.",
			fiveMinutes: "5 minutes left to pay.",
			// payment
			pay: "Pay {amount}",
			paying: "Paying…",
			payMethod: "How to pay",
			declined: "The payment was declined. Try another card or method.",
			pointsShort: "Not enough points for this. Try another method.",
			payExpired: "Too late: the slot expired before the payment went through. Nothing was charged.",
			notHeld: "This slot is no longer waiting for payment.",
			paid: "Paid. Thank you!",
			receipt: "Receipt",
			receiptNo: "Receipt no.",
			product: "Product",
			amount: "Amount",
			method: "Method",
			status: "Status",
			paySUCCESS: "Paid",
			payFAILED: "Failed",
			payPENDING: "Pending",
			// history
			history: "Your slots and payments",
			noHistory: "No slots yet.",
			slots: "Slots",
			payments: "Payments",
			// reset page
			resetTitle: "Choose a new password",
			resetSave: "Save the new password",
			resetDone: "Your password is changed. Sign in with the new one.",
			resetBad: "This link is wrong, used or expired. Ask for a new one.",
			resetMismatch: "The two passwords differ.",
			resetNoToken: "This page needs the link from the reset e-mail.",
			continueShopping: "Back to the shop",
		},
		ko: {
			brand: "도파민 스토어",
			skip: "본문으로 건너뛰기",
			loading: "불러오는 중…",
			shopTitle: "오늘의 한정 판매",
			shopIntro: "한정 수량, 선착순입니다. 상품마다 구매 페이지가 있습니다.",
			noProducts: "아직 판매 중인 상품이 없습니다. 10시에 다시 와 주세요.",
			price: "가격",
			saleAt: "판매 시작",
			left: "남은 수량",
			leftOf: "{stock}개 중 {n}개 남음",
			statusSCHEDULED: "판매 예정",
			statusON_SALE: "판매 중",
			statusSOLD_OUT: "품절",
			opensIn: "{t} 후 시작",
			openNow: "지금 판매 중",
			soldOutNow: "품절",
			dayShort: "{d}일",
			loadFailed: "불러오지 못했습니다. 연결을 확인해 주세요. 곧 다시 시도합니다.",
			productNotFound: "없는 상품입니다.",
			backToShop: "전체 상품",
			account: "내 계정",
			signIn: "로그인",
			signUp: "회원가입",
			signOut: "로그아웃",
			signedInAs: "{who} 님으로 로그인됨",
			loginId: "아이디",
			loginIdHint: "영문, 숫자, '_', '.', '-' 4~32자",
			password: "비밀번호",
			passwordHint: "8자 이상",
			newPassword: "새 비밀번호",
			repeatPassword: "새 비밀번호 확인",
			email: "이메일",
			needAccount: "처음이신가요? 회원가입",
			haveAccount: "계정이 있으신가요? 로그인",
			forgot: "비밀번호를 잊으셨나요?",
			forgotTitle: "비밀번호 재설정",
			forgotSend: "재설정 링크 보내기",
			forgotSent: "이 주소로 가입된 계정이 있으면 재설정 링크를 보냈습니다. 30분 동안 유효합니다.",
			signInFirst: "구매하려면 로그인하거나 회원가입해 주세요.",
			badCredentials: "아이디 또는 비밀번호가 틀렸습니다.",
			loginIdTaken: "이미 사용 중인 아이디입니다. 다른 아이디를 골라 주세요.",
			tooMany: "시도가 너무 많습니다. {s}초 후에 다시 해 주세요.",
			checkFields: "다음을 확인해 주세요: {fields}.",
			fieldloginId: "아이디(영문, 숫자, '_', '.', '-' 4~32자)",
			fieldpassword: "비밀번호(8~128자)",
			fieldemail: "이메일 주소",
			sessionEnded: "로그인이 만료되었습니다. 다시 로그인해 주세요.",
			networkError: "스토어가 응답하지 않습니다. 연결을 확인하고 다시 시도해 주세요.",
			serverError: "일시적인 문제가 생겼습니다. 잠시 후 다시 시도해 주세요.",
			buy: "지금 구매",
			buyOpensAt: "{time}에 열림",
			notifyMe: "오픈 알림 신청",
			notifyMeOff: "알림 신청 취소",
			notifyMeOn: "판매 시작 전 {time}에 메일로 알려 드립니다.",
			notifyMeStopped: "알림 신청을 취소했습니다.",
			buying: "순번을 받는 중…",
			youHaveOne: "이미 확보한 상품",
			saleOpened: "판매가 시작되었습니다.",
			granted: "구매 성공! 대기 순번 #{seq}. 타이머가 끝나기 전에 결제해 주세요.",
			grantedNoSeq: "구매 성공! 타이머가 끝나기 전에 결제해 주세요.",
			soldOut: "품절되었습니다. 대기 순번은 #{seq}였고, 앞선 분들에게 모두 돌아갔습니다.",
			soldOutNoSeq: "품절되었습니다. 남은 수량이 없습니다.",
			already: "이미 이 상품의 구매 권한을 갖고 있습니다(아래 참고).",
			notOpen: "아직 판매 전입니다. {time}에 시작합니다.",
			busy: "접속자가 많습니다. {s}초 후 다시 시도합니다…",
			busyGaveUp: "여전히 접속자가 많습니다. 버튼을 눌러 다시 시도해 주세요.",
			yourSlot: "내 구매 권한",
			slotHELD: "결제 대기",
			slotPAID: "결제 완료",
			slotEXPIRED: "만료",
			placeInLine: "대기 순번",
			timeLeft: "결제 남은 시간",
			slotExpiredNow: "결제 시간이 지나 구매 권한이 만료되었고, 재고는 다시 판매됩니다.",
			fiveMinutes: "결제 시간이 5분 남았습니다.",
			pay: "{amount} 결제",
			paying: "결제 중…",
			payMethod: "결제 수단",
			declined: "결제가 거절되었습니다. 다른 카드나 결제 수단을 이용해 주세요.",
			pointsShort: "포인트가 부족합니다. 다른 결제 수단을 이용해 주세요.",
			payExpired: "결제 전에 구매 권한이 만료되었습니다. 청구된 금액은 없습니다.",
			notHeld: "이 구매 권한은 더 이상 결제를 기다리지 않습니다.",
			paid: "결제가 완료되었습니다. 감사합니다!",
			receipt: "영수증",
			receiptNo: "영수증 번호",
			product: "상품",
			amount: "금액",
			method: "결제 수단",
			status: "상태",
			paySUCCESS: "결제 완료",
			payFAILED: "실패",
			payPENDING: "대기",
			history: "내 구매 권한과 결제 내역",
			noHistory: "아직 구매 권한이 없습니다.",
			slots: "구매 권한",
			payments: "결제",
			resetTitle: "새 비밀번호 설정",
			resetSave: "새 비밀번호 저장",
			resetDone: "비밀번호가 변경되었습니다. 새 비밀번호로 로그인해 주세요.",
			resetBad: "잘못되었거나 이미 사용했거나 만료된 링크입니다. 새 링크를 요청해 주세요.",
			resetMismatch: "두 비밀번호가 다릅니다.",
			resetNoToken: "재설정 이메일의 링크로 열어 주세요.",
			continueShopping: "쇼핑 계속하기",
		},
	};

	/** The first of the browser's languages we speak; English otherwise. */
	function pickLanguage() {
		const langs = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]).map(l => String(l).toLowerCase());
		for (const l of langs) {
			if (l.startsWith("ko")) return "ko";
			if (l.startsWith("en")) return "en";
		}
		return "en";
	}
	const lang = pickLanguage();
	const locale = lang === "ko" ? "ko-KR" : "en-US";

	function t(key, vars) {
		const s = (WORDS[lang] && WORDS[lang][key]) || WORDS.en[key] || key;
		return vars ? s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined ? "" : String(vars[k]))) : s;
	}

	/** Fills [data-i18n] (text) and [data-i18n-attr="attr:key;attr:key"] in the static HTML. */
	function translate(root) {
		document.documentElement.lang = lang;
		for (const el of (root || document).querySelectorAll("[data-i18n]")) el.textContent = t(el.getAttribute("data-i18n"));
		for (const el of (root || document).querySelectorAll("[data-i18n-attr]"))
			for (const pair of el.getAttribute("data-i18n-attr").split(";")) {
				const [attr, key] = pair.split(":");
				if (attr && key) el.setAttribute(attr.trim(), t(key.trim()));
			}
		const title = document.querySelector("title[data-i18n-title]");
		if (title) document.title = t(title.getAttribute("data-i18n-title")) + " · " + t("brand");
	}

	const money = new Intl.NumberFormat(locale, { style: "currency", currency: "KRW" });
	const dateTime = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "medium" });
	const timeOnly = new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
	const fmt = {
		money: n => money.format(Number(n)),
		dateTime: iso => dateTime.format(new Date(iso)),
		/** "10:00:00", with the date too when it is not today. */
		when: iso => {
			const d = new Date(iso);
			return d.toDateString() === new Date(serverNow()).toDateString() ? timeOnly.format(d) : dateTime.format(d);
		},
		/** A duration as [d] hh:mm:ss (or mm:ss under an hour). */
		duration(ms, withHours) {
			const s = Math.max(0, Math.ceil(ms / 1000));
			const d = Math.floor(s / 86400);
			const h = Math.floor((s % 86400) / 3600);
			const m = Math.floor((s % 3600) / 60);
			const two = n => String(n).padStart(2, "0");
			const hms = h > 0 || d > 0 || withHours ? `${two(h)}:${two(m)}:${two(s % 60)}` : `${two(m)}:${two(s % 60)}`;
			return d > 0 ? `${t("dayShort", { d })} ${hms}` : hms;
		},
	};

	// ---- the server's clock -------------------------------------------------------------------
	// Each sample: the server's `now` plus half the round trip, anchored to performance.now() (which
	// a phone's clock change cannot move). The sample with the shortest round trip wins: its error is
	// at most half of that round trip.
	let clock = { server: Date.now(), at: performance.now(), rtt: Infinity, synced: false };
	function serverNow() {
		return clock.server + (performance.now() - clock.at);
	}
	async function syncClock(samples) {
		let best = null;
		for (let i = 0; i < (samples || 3); i++) {
			const t0 = performance.now();
			const r = await request("GET", "/api/time");
			const t1 = performance.now();
			if (r.status !== 200 || !r.body || !r.body.now) continue;
			const rtt = t1 - t0;
			if (!best || rtt < best.rtt) best = { server: Date.parse(r.body.now) + rtt / 2, at: t1, rtt, synced: true };
		}
		if (best) clock = best;
		document.documentElement.dataset.clockRtt = String(Math.round(clock.rtt));
		return clock.synced;
	}

	// ---- the API ------------------------------------------------------------------------------
	/** One JSON request. Never throws: a network failure is status 0. */
	async function request(method, path, opts) {
		opts = opts || {};
		const headers = Object.assign({ accept: "application/json" }, opts.headers || {});
		if (opts.token) headers.authorization = "Bearer " + opts.token;
		let body;
		if (opts.body !== undefined) {
			headers["content-type"] = "application/json";
			body = JSON.stringify(opts.body);
		}
		try {
			const res = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
			const text = await res.text();
			let parsed = null;
			try {
				parsed = text ? JSON.parse(text) : null;
			} catch (_) {
				parsed = null;
			}
			const retryAfter = Number.parseFloat(res.headers.get("retry-after") || "");
			return { status: res.status, body: parsed, retryAfter: Number.isFinite(retryAfter) ? retryAfter : null };
		} catch (_) {
			return { status: 0, body: null, retryAfter: null };
		}
	}

	/** Waits Retry-After (or 1 s), plus jitter so a crowd told "1 s" does not come back in step. */
	function backoffMs(retryAfter) {
		const base = Math.max(0.2, retryAfter == null ? 1 : retryAfter) * 1000;
		return Math.round(base + Math.random() * Math.max(300, base / 2));
	}

	// ---- the session --------------------------------------------------------------------------
	const KEY = "dopamine.session";
	const session = {
		get() {
			try {
				const s = JSON.parse(localStorage.getItem(KEY) || "null");
				if (s && s.token && s.expiresAt > Date.now() + 5000) return s;
			} catch (_) {
				/* unreadable: signed out */
			}
			return null;
		},
		set(token, expiresIn, user) {
			localStorage.setItem(KEY, JSON.stringify({ token, expiresAt: Date.now() + expiresIn * 1000, user }));
		},
		clear() {
			localStorage.removeItem(KEY);
		},
		token() {
			const s = session.get();
			return s ? s.token : null;
		},
	};

	/** An authenticated request; a 401 ends the session (the caller shows the sign-in form). */
	async function authed(method, path, opts) {
		const token = session.token();
		if (!token) return { status: 401, body: null, retryAfter: null };
		const r = await request(method, path, Object.assign({}, opts, { token }));
		if (r.status === 401) session.clear();
		return r;
	}

	/** The sentence for a failed account request (sign-in, sign-up, forgot, reset). */
	function accountError(r) {
		if (r.status === 0) return t("networkError");
		const type = r.body && r.body.type;
		if (type === "INVALID_CREDENTIALS") return t("badCredentials");
		if (type === "LOGIN_ID_TAKEN") return t("loginIdTaken");
		if (r.status === 429) return t("tooMany", { s: Math.ceil(r.retryAfter || 1) });
		if (r.status === 422 || r.status === 400) {
			const fields = Array.isArray(r.body && r.body.data) ? [...new Set(r.body.data.map(d => d && d.field).filter(Boolean))] : [];
			if (fields.length) return t("checkFields", { fields: fields.map(f => t("field" + f)).join(", ") });
		}
		if (r.status >= 500) return t("serverError");
		return (r.body && r.body.message) || t("serverError");
	}

	/** Signs in; on success the session is stored. Returns null or the error sentence. */
	async function signIn(loginId, password) {
		const r = await request("POST", "/api/auth/login", { body: { loginId, password } });
		if (r.status !== 200) return accountError(r);
		session.set(r.body.accessToken, r.body.expiresIn, { loginId });
		const me = await authed("GET", "/api/me");
		if (me.status === 200) session.set(r.body.accessToken, r.body.expiresIn, me.body.user);
		return null;
	}

	/** An Idempotency-Key; getRandomValues works on plain http too (randomUUID does not). */
	function randomKey() {
		const b = new Uint8Array(16);
		crypto.getRandomValues(b);
		return Array.from(b, x => x.toString(16).padStart(2, "0")).join("");
	}

	/** Element helper: el("p", {class: "x"}, "text", child...). Text only, never HTML. */
	function el(tag, attrs, ...children) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (v === null || v === undefined || v === false) continue;
			if (k === "class") e.className = v;
			else if (k === "text") e.textContent = v;
			else e.setAttribute(k, v === true ? "" : String(v));
		}
		for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
		return e;
	}

	/** Shows a message in a status region (role="status" or "alert" in the HTML). */
	function say(node, text, kind) {
		node.textContent = text || "";
		node.dataset.kind = kind || "";
		node.hidden = !text;
	}

	window.Store = { lang, t, translate, fmt, serverNow, syncClock, request, authed, backoffMs, session, signIn, accountError, randomKey, el, say };
	// Scripts load with `defer`: the document is parsed by now.
	translate();
})();
