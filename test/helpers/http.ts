export interface Reply<T = any> {
	status: number;
	body: T;
	headers: Headers;
	text: string;
}

/** A JSON request to a real HTTP server. `body` as a string is sent as is (for garbage tests). */
export async function request<T = any>(
	base: string,
	method: string,
	path: string,
	opts: { body?: unknown; token?: string; headers?: Record<string, string> } = {}
): Promise<Reply<T>> {
	const headers: Record<string, string> = { ...opts.headers };
	if (opts.token) headers.authorization = `Bearer ${opts.token}`;
	let body: string | undefined;
	if (opts.body !== undefined) {
		body = typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
		headers["content-type"] ??= "application/json";
	}
	const res = await fetch(base + path, { method, headers, body });
	const text = await res.text();
	let parsed: any = null;
	try {
		parsed = text ? JSON.parse(text) : null;
	} catch {
		parsed = text;
	}
	return { status: res.status, body: parsed, headers: res.headers, text };
}

export const api = (base: string) => ({
	get: <T = any>(path: string, token?: string) => request<T>(base, "GET", path, { token }),
	post: <T = any>(path: string, body?: unknown, token?: string, headers?: Record<string, string>) =>
		request<T>(base, "POST", path, { body, token, headers }),
	patch: <T = any>(path: string, body?: unknown, token?: string) => request<T>(base, "PATCH", path, { body, token }),
	del: <T = any>(path: string, token?: string) => request<T>(base, "DELETE", path, { token }),
});
