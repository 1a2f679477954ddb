import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { promisify } from "node:util";
import { DEFAULT_PRISMA_ROOT, SERVICES, type ServiceName, servicePaths } from "./services.ts";

const require = createRequire(import.meta.url);
const run = promisify(execFile);

export const PRISMA_CLI = path.join(path.dirname(require.resolve("prisma/package.json")), "build", "index.js");

/**
 * An executable that only fails, for PRISMA_SCHEMA_ENGINE_BINARY: without one the CLI downloads
 * the native engine before any command, even those that never run it (generate, validate).
 */
const ENGINE_STUB = path.resolve(import.meta.dirname, "../bin/schema-engine");

/** The environment for running the Prisma CLI offline. */
export function offlineCliEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PRISMA_SCHEMA_ENGINE_BINARY: ENGINE_STUB,
    // No update check or telemetry: there is no network to reach.
    CHECKPOINT_DISABLE: "1",
    PRISMA_HIDE_UPDATE_MESSAGE: "1",
  };
}

/**
 * Runs the ordinary `prisma generate` on each service's schema folder, offline. The clients land
 * where the schemas' generators say: subgraphs/<service>/src/generated/prisma (git-ignored).
 */
export async function generateClients(options: { services?: readonly ServiceName[]; prismaRoot?: string } = {}): Promise<void> {
  const { services = SERVICES, prismaRoot = DEFAULT_PRISMA_ROOT } = options;
  for (const service of services) {
    const { schemaDir } = servicePaths(service, prismaRoot);
    await run(process.execPath, [PRISMA_CLI, "generate", "--schema", schemaDir], {
      cwd: path.dirname(prismaRoot),
      env: offlineCliEnv(),
    }).catch((error: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`prisma generate failed for ${service}:\n${error.stdout ?? ""}${error.stderr ?? error.message}`);
    });
  }
}
