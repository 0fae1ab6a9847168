/** @type {import('jest').Config} */
module.exports = {
	testEnvironment: "<rootDir>/test/helpers/environment.js",
	testMatch: ["<rootDir>/test/**/*.test.ts"],
	transform: { "^.+\\.ts$": ["ts-jest", { diagnostics: false }] },
	moduleFileExtensions: ["ts", "js", "json"],
	testTimeout: 60_000,
	maxWorkers: 2,
	verbose: true,
};
