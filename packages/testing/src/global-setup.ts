import { rmSync } from "node:fs";
import { startInfra, testDataDir, type Infra } from "@vaultpay/stack";

let infra: Infra | undefined;
let dataDir: string | undefined;

/**
 * Once per test run: a PostgreSQL server for every test file (each makes its own databases on it).
 * Embedded PostgreSQL unless TEST_DATABASE_URL names a server — a fresh machine has none, and the
 * suite must not lean on whatever happens to run on this one. NATS and Redis are started per test
 * file instead (cheap, and isolated: streams and keys are global to a server).
 */
export async function setup(): Promise<void> {
  dataDir = testDataDir("run-");
  infra = await startInfra({
    dataDir,
    persistent: false,
    databaseUrl: process.env.TEST_DATABASE_URL,
    // Only PostgreSQL is shared; pretend the others are given so nothing else starts here.
    natsUrl: "nats://unused",
    redisUrl: "redis://unused",
    ports: { postgres: 0 },
  });
  process.env.DATABASE_URL = infra.databaseUrl;
}

export async function teardown(): Promise<void> {
  await infra?.stop();
  // The infra removes what it made inside (persistent: false); the run's own folder is ours.
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
