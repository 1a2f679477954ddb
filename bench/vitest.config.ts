import { defineConfig } from "vitest/config";

/** Benchmarks: real infrastructure, numbers written to bench/*-results.md. Run one at a time. */
export default defineConfig({
  test: {
    root: new URL("..", import.meta.url).pathname,
    include: ["bench/**/*.bench.ts"],
    globalSetup: ["packages/testing/src/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 900_000,
    hookTimeout: 180_000,
    pool: "forks",
  },
});
