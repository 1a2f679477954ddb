import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["packages/*/src/**/*.test.ts", "subgraphs/*/src/**/*.test.ts", "gateway/src/**/*.test.ts", "scripts/**/*.test.ts", "test/**/*.test.ts"],
    globalSetup: ["packages/testing/src/global-setup.ts"],
    // Two cores: two files at a time; each integration file brings its own NATS/Redis.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: "forks",
  },
});
