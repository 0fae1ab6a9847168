import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** The repository's root. */
export const ROOT = join(__dirname, "..", "..");

/** Every file below the given folders of the repository, for checks that read the source as text. */
export function filesUnder(...dirs: string[]): string[] {
	const walk = (dir: string): string[] =>
		readdirSync(dir).flatMap(f => {
			const p = join(dir, f);
			return statSync(p).isDirectory() ? walk(p) : [p];
		});
	return dirs.flatMap(d => walk(join(ROOT, d)));
}
