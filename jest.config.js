/** @type {import('jest').Config} */
module.exports = {
	testEnvironment: "<rootDir>/test/helpers/environment.js",
	testMatch: ["<rootDir>/test/**/*.test.ts"],
	transform: { "^.+\\.ts$": ["ts-jest", { diagnostics: false }] },
	moduleFileExtensions: ["ts", "js", "json"],
	testTimeout: 60_000,
	maxWorkers: 2,
	verbose: true,
	// Agenda's ESM modules, imported under --experimental-vm-modules, keep jest's process alive
	// after the last test (a plain Node process that stops a broker keeps nothing: see the leak
	// check in test/helpers/environment.js, which fails any file that leaves a broker or a child
	// process running). So jest exits when the tests are done.
	forceExit: true,
};
