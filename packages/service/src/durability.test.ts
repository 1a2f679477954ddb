/** Durable commits on a real PostgreSQL server, whatever a URL or the server's default says. */
import { describe, expect, it } from "vitest";
import pg from "pg";
import { createLogger } from "@vaultpay/kit";
import { testServerUrl } from "@vaultpay/testing";
import { checkDurability, withDurableCommits } from "./index.ts";

/** A one-connection executor in the shape the services' Prisma clients have. */
async function executor(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    $queryRawUnsafe: async <T = unknown>(sql: string) => (await client.query(sql)).rows as T,
    end: () => client.end(),
  };
}

function withOptions(url: string, options: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set("options", options);
  return parsed.toString();
}

describe("durable commits", () => {
  it("turns synchronous_commit on for the service's sessions, even when the URL asked for off", async () => {
    const careless = withOptions(testServerUrl(), "-c synchronous_commit=off -c statement_timeout=5000");
    const db = await executor(withDurableCommits(careless));
    try {
      const [row] = (await db.$queryRawUnsafe(
        "SELECT current_setting('synchronous_commit') AS s, current_setting('statement_timeout') AS t",
      )) as Array<{
        s: string;
        t: string;
      }>;
      expect(row).toEqual({ s: "on", t: "5s" });
    } finally {
      await db.end();
    }
  });

  it("refuses a session without durable commits in production and warns elsewhere", async () => {
    const db = await executor(withOptions(testServerUrl(), "-c synchronous_commit=off"));
    const warnings: string[] = [];
    const logger = createLogger({ service: "t", level: "warn" });
    logger.warn = ((message: string) => warnings.push(message)) as typeof logger.warn;
    try {
      await expect(checkDurability(db, true, logger)).rejects.toThrow(/synchronous_commit=off/);
      await checkDurability(db, false, logger);
      expect(warnings).toEqual([expect.stringMatching(/synchronous_commit=off: a crash would undo commits/)]);
    } finally {
      await db.end();
    }
  });

  it("accepts the server the stack starts", async () => {
    const db = await executor(withDurableCommits(testServerUrl()));
    try {
      await expect(checkDurability(db, true, createLogger({ service: "t", level: "silent" }))).resolves.toBeUndefined();
    } finally {
      await db.end();
    }
  });
});
