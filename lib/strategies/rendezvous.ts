/**
 * Rendezvous (highest random weight) hashing: every caller that sees the same set of nodes picks
 * the same owner for a key, and when a node joins or leaves only the keys it wins or held move
 * (about 1/n of them), unlike a modulo or a coarse ring.
 */
export function score(key: string, nodeId: string): number {
	// FNV-1a over key + NUL + node id, then murmur3's finaliser for avalanche.
	let h = 0x811c9dc5;
	const s = key + "\u0000" + nodeId;
	for (let i = 0; i < s.length; i++) {
		h ^= s.charCodeAt(i);
		h = Math.imul(h, 0x01000193);
	}
	h ^= h >>> 16;
	h = Math.imul(h, 0x85ebca6b);
	h ^= h >>> 13;
	h = Math.imul(h, 0xc2b2ae35);
	h ^= h >>> 16;
	return h >>> 0;
}

/** The owner of `key` among `items`, by rendezvous hashing on each item's node id. */
export function ownerOf<T>(key: string, items: readonly T[], nodeIdOf: (item: T) => string): T | undefined {
	let best: T | undefined;
	let bestScore = -1;
	let bestId = "";
	for (const item of items) {
		const id = nodeIdOf(item);
		const sc = score(key, id);
		// Ties (astronomically rare) break on the node id, so every caller still agrees.
		if (sc > bestScore || (sc === bestScore && id > bestId)) {
			best = item;
			bestScore = sc;
			bestId = id;
		}
	}
	return best;
}
