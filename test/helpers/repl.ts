import type { ChildNode } from "./nodes";
import { waitFor } from "./nodes";

/**
 * Runs one REPL command on a node started with `--repl` and returns what it printed. With `until`,
 * waits for that output (the REPL redraws its prompt whenever a log line arrives, so a prompt alone
 * does not mean the command is done); without, returns what came before the next prompt.
 */
export async function runRepl(node: ChildNode, command: string, until?: RegExp | string): Promise<string> {
	const start = node.output().length;
	node.proc.stdin!.write(`${command}\n`);
	const seen = () => node.output().slice(start);
	const done = until === undefined ? () => seen().includes("mol $ ")
		: typeof until === "string" ? () => seen().includes(until) : () => until.test(seen());
	await waitFor(`"${command}" to finish`, done, 15_000).catch(() => undefined);
	const out = seen();
	if (until === undefined) return out.slice(0, out.indexOf("mol $ "));
	const at = typeof until === "string" ? out.indexOf(until) + until.length : (() => {
		const m = new RegExp(until.source, until.flags.replace("g", "")).exec(out);
		return m ? m.index + m[0].length : out.length;
	})();
	const prompt = out.indexOf("mol $ ", Math.max(0, at));
	return prompt >= 0 ? out.slice(0, prompt) : out;
}
