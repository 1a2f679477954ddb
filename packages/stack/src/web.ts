/**
 * The web app (apps/web) built for the gateway to serve at `/`. Built only when a source file is
 * newer than the last build, so `pnpm start` and the browser tests pay the build once per change.
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "./services.ts";

export const WEB_APP_ROOT = path.join(REPO_ROOT, "apps/web");
export const WEB_APP_DIST = path.join(WEB_APP_ROOT, "dist");
const SOURCES = ["src", "index.html", "vite.config.ts", "package.json"];
/** A build takes about 3 s on a quiet machine; a stuck one must not hang start-up. */
const BUILD_TIMEOUT_MS = 180_000;

function newestMtimeMs(entry: string): number {
  const info = statSync(entry);
  if (!info.isDirectory()) return info.mtimeMs;
  return readdirSync(entry).reduce((newest, name) => Math.max(newest, newestMtimeMs(path.join(entry, name))), info.mtimeMs);
}

/** Whether dist/ is missing or older than a source file. */
export function webAppStale(): boolean {
  const built = path.join(WEB_APP_DIST, "index.html");
  if (!existsSync(built)) return true;
  const builtAt = statSync(built).mtimeMs;
  return SOURCES.some((source) => newestMtimeMs(path.join(WEB_APP_ROOT, source)) > builtAt);
}

/**
 * Builds the app with Vite unless it is current; resolves with the build's last lines (the
 * gzipped JavaScript size among them), or undefined when nothing needed building.
 */
export async function buildWebApp(options: { force?: boolean } = {}): Promise<string | undefined> {
  if (!options.force && !webAppStale()) return undefined;
  const vite = path.join(WEB_APP_ROOT, "node_modules/vite/bin/vite.js");
  const output: string[] = [];
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(process.execPath, [vite, "build", "--logLevel", "warn"], { cwd: WEB_APP_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    const timer = setTimeout(() => child.kill("SIGKILL"), BUILD_TIMEOUT_MS);
    const keep = (chunk: Buffer) => output.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", reject);
    child.on("exit", (exitCode) => {
      clearTimeout(timer);
      resolve(exitCode);
    });
  });
  if (code !== 0) throw new Error(`the web app did not build (exit ${code}):\n${output.slice(-20).join("\n")}`);
  return output.slice(-5).join("\n");
}
