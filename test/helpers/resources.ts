/** Registry the leak guard (test/helpers/environment.js) reads when a test file ends. */
interface Resource {
	name: string;
	close(): Promise<void>;
}

const registry = (): Map<object, Resource> => (globalThis as any).__openResources ?? ((globalThis as any).__openResources = new Map());

export function track(key: object, resource: Resource): void {
	registry().set(key, resource);
}

export function untrack(key: object): void {
	registry().delete(key);
}
