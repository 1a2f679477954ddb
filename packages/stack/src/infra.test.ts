/** Embedded PostgreSQL and nats-server start-up as `pnpm start` meets them, on real servers. */
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import pg from "pg";
import { freePort } from "./net.ts";
import { natsEnvironment, startNats, startPostgres } from "./infra.ts";
import { testDataDir } from "./test-data.ts";

describe("embedded PostgreSQL", () => {
  const dir = testDataDir("infra-");
  const stops: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const stop of stops) await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("says which PostgreSQL already runs on the data folder, and how to stop it", async () => {
    const first = await startPostgres(dir, true, await freePort());
    stops.push(() => first.postgres.stop());
    const pid = Number(readFileSync(path.join(first.databaseDir, "postmaster.pid"), "utf8").split("\n")[0]);
    await expect(startPostgres(dir, true, await freePort())).rejects.toThrow(
      `PostgreSQL is already running on ${first.databaseDir} (pid ${pid}), probably left by a stack that was killed; stop it with \`kill -INT ${pid}\``,
    );
  });

  it("runs with durable commits, flushed together (group commit), and checkpoints spaced for a write-heavy load", async () => {
    const server = await startPostgres(path.join(dir, "second"), false, await freePort());
    stops.push(() => server.postgres.stop());
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      const settings = await client.query(
        `SELECT name, setting FROM pg_settings
          WHERE name IN ('synchronous_commit', 'fsync', 'full_page_writes', 'commit_delay', 'commit_siblings', 'max_wal_size')
          ORDER BY name`,
      );
      expect(settings.rows).toEqual([
        { name: "commit_delay", setting: "500" },
        { name: "commit_siblings", setting: "1" },
        { name: "fsync", setting: "on" },
        { name: "full_page_writes", setting: "on" },
        { name: "max_wal_size", setting: "4096" },
        { name: "synchronous_commit", setting: "on" },
      ]);
    } finally {
      await client.end();
    }
  });
});

describe("nats-server", () => {
  const dir = testDataDir("nats-");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs on one Go scheduler thread unless GOMAXPROCS says otherwise", async () => {
    const nats = await startNats(dir, await freePort(), null);
    try {
      // The environment the running server was started with, as its Go runtime read it.
      const environ = readFileSync(`/proc/${nats.process.child.pid}/environ`, "utf8").split("\0");
      expect(environ.filter((entry) => entry.startsWith("GOMAXPROCS="))).toEqual([`GOMAXPROCS=${process.env.GOMAXPROCS || "1"}`]);
    } finally {
      await nats.process.stop();
    }
    expect(natsEnvironment({ PATH: "/usr/bin" })).toEqual({ PATH: "/usr/bin", GOMAXPROCS: "1" });
    expect(natsEnvironment({ GOMAXPROCS: "4" }).GOMAXPROCS).toBe("4");
  });
});
