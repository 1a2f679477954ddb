import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "apps/*/src/**/*.test.ts",
      "packages/*/src/**/*.test.ts",
      "subgraphs/*/src/**/*.test.ts",
      "gateway/src/**/*.test.ts",
      "scripts/**/*.test.ts",
      "test/**/*.test.ts",
    ],
    globalSetup: ["packages/testing/src/global-setup.ts"],
    setupFiles: ["test/setup.ts"],
    // One file at a time: a whole-stack file runs seven Node processes, PostgreSQL, NATS and Redis,
    // and two of them at once on two cores starved each other into timeouts (seen on CI once).
    maxWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: "forks",
  },
});
