import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import react from "@vitejs/plugin-react";
import { defineConfig, type Plugin } from "vite";

/** The budget for the first load: gzipped JavaScript. */
const MAX_GZIPPED_JS_BYTES = 250 * 1024;

/** Prints the gzipped size of all JavaScript the build wrote, and fails the build over budget. */
function gzippedJsBudget(): Plugin {
  let outDir = "dist";
  return {
    name: "vaultpay-gzipped-js-budget",
    apply: "build",
    configResolved(config) {
      outDir = path.resolve(config.root, config.build.outDir);
    },
    closeBundle() {
      const assets = path.join(outDir, "assets");
      const total = readdirSync(assets)
        .filter((name) => name.endsWith(".js"))
        .reduce((sum, name) => sum + gzipSync(readFileSync(path.join(assets, name))).length, 0);
      const line = `gzipped JavaScript: ${(total / 1024).toFixed(1)} KB (budget ${MAX_GZIPPED_JS_BYTES / 1024} KB)`;
      process.stdout.write(`${line}\n`);
      if (total > MAX_GZIPPED_JS_BYTES) throw new Error(`over budget — ${line}`);
    },
  };
}

export default defineConfig({
  plugins: [react(), gzippedJsBudget()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: { proxy: { "/graphql": { target: "http://127.0.0.1:4000", ws: true } } },
});
