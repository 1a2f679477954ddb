import { chmodSync, mkdirSync, mkdtempSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "./services.ts";

/**
 * A new folder of a test's own for the servers it starts, under the repository's `.test-data`
 * (ignored by git) and readable by all: not os.tmpdir() with mkdtemp's 0700, because PostgreSQL
 * runs as an unprivileged user when the tests run as root. The caller removes it.
 */
export function testDataDir(prefix: string): string {
  const base = path.join(REPO_ROOT, ".test-data");
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, prefix));
  chmodSync(dir, 0o755);
  return dir;
}
