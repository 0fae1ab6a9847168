import type { IncomingMessage } from "node:http";
import proxyaddr from "proxy-addr";

/**
 * The client's address for per-address limits. X-Forwarded-For is believed only through the
 * proxies named in TRUSTED_PROXIES (none by default): proxy-addr walks the header from the socket
 * address inwards and stops at the first hop that is not trusted, so a client cannot choose its
 * own address by sending the header itself.
 */
export type ClientAddressOf = (req: IncomingMessage) => string | undefined;

export function clientAddressOf(trustedProxies: string[]): ClientAddressOf {
	const trust = proxyaddr.compile(trustedProxies);
	return req => {
		if (!req.socket.remoteAddress) return undefined;
		return plain(trustedProxies.length ? proxyaddr(req, trust) : req.socket.remoteAddress);
	};
}

/** `::ffff:10.0.0.1` and `10.0.0.1` are one client. */
function plain(address: string): string {
	return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
