/** SqlPool on a real PostgreSQL server: Prisma's `$transaction` contract on node-postgres. */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createTestDatabase } from "@vaultpay/testing";
import { preferIndexScans, type SqlExecutor } from "@vaultpay/events";
import { POOL_IDLE_TIMEOUT_MS } from "./db.ts";
import { SqlPool, openingStatementName } from "./sql.ts";

describe("SqlPool", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: SqlPool;

  beforeAll(async () => {
    database = await createTestDatabase("audit");
    pool = new SqlPool(database.url, { max: 2 });
    await pool.$executeRawUnsafe(`CREATE TABLE pool_probe (id int PRIMARY KEY, amount bigint NOT NULL, at timestamp(3))`);
  });
  afterAll(async () => {
    await pool?.$disconnect();
    await database?.drop();
  });

  const count = async () => (await pool.$queryRawUnsafe<Array<{ n: bigint }>>(`SELECT count(*) AS n FROM pool_probe`))[0]!.n;

  it("commits what the callback wrote and returns its result; rows affected come back as a number", async () => {
    const result = await pool.$transaction(async (tx) => {
      const inserted = await tx.$executeRawUnsafe(
        `INSERT INTO pool_probe VALUES (1, $1, $2), (2, $1, $2)`,
        10n ** 15n,
        new Date("2026-01-02T03:04:05.678Z"),
      );
      return { inserted };
    });
    expect(result).toEqual({ inserted: 2 });
    const rows = await pool.$queryRawUnsafe<Array<{ amount: bigint; at: Date }>>(`SELECT amount, at FROM pool_probe WHERE id = 1`);
    // int8 as BigInt, and `timestamp` read back as the UTC instant it was written as.
    expect(rows).toEqual([{ amount: 10n ** 15n, at: new Date("2026-01-02T03:04:05.678Z") }]);
  });

  it("keeps an idle connection open for POOL_IDLE_TIMEOUT_MS (node-postgres closes it after 10 s), then lets it go", async () => {
    // The pool's idle timer on a fake clock; the connection itself is real.
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const idle = new SqlPool(database.url, { max: 1 });
    try {
      const backend = async () => (await idle.$queryRawUnsafe<Array<{ pid: number }>>(`SELECT pg_backend_pid() AS pid`))[0]!.pid;
      const first = await backend();
      vi.advanceTimersByTime(60_000);
      expect(await backend()).toBe(first);
      vi.advanceTimersByTime(POOL_IDLE_TIMEOUT_MS + 1_000);
      expect(await backend()).not.toBe(first);
    } finally {
      vi.useRealTimers();
      await idle.$disconnect();
    }
  });

  it("rolls back everything when the callback throws, and the connection serves the next transaction", async () => {
    const before = await count();
    await expect(
      pool.$transaction(async (tx) => {
        await tx.$executeRawUnsafe(`INSERT INTO pool_probe VALUES (3, 1, NULL)`);
        throw new Error("handler failed");
      }),
    ).rejects.toThrow("handler failed");
    await expect(pool.$transaction((tx) => tx.$executeRawUnsafe(`INSERT INTO pool_probe VALUES (1, 1, NULL)`))).rejects.toThrow(
      /duplicate key/,
    );
    expect(await count()).toBe(before);
    // Both connections of the pool are usable afterwards (none was left inside a transaction).
    await Promise.all([1, 2].map(() => pool.$transaction((tx) => tx.$queryRawUnsafe(`SELECT 1`))));
  });

  it("runs an opening statement in BEGIN's round trip, inside the transaction, and hands its rows to the callback", async () => {
    const opening = `INSERT INTO pool_probe VALUES (40, 7, NULL), (41, 8, NULL) RETURNING id, amount`;
    const seen = await pool.$transaction(
      async (tx, opened) => {
        // The rows are the opening statement's, parsed as any statement's are (int8 as BigInt).
        expect(opened).toEqual([
          { id: 40, amount: 7n },
          { id: 41, amount: 8n },
        ]);
        // Inside the transaction: the callback's statements see its rows, and its settings hold.
        const [row] = await tx.$queryRawUnsafe<Array<{ n: bigint; seqscan: string }>>(
          `SELECT count(*) AS n, current_setting('enable_seqscan') AS seqscan FROM pool_probe WHERE id IN (40, 41)`,
        );
        return row;
      },
      { opening },
    );
    expect(seen).toEqual({ n: 2n, seqscan: "off" });
    // Rolled back with the transaction when the callback throws.
    await expect(
      pool.$transaction(
        async () => {
          throw new Error("rolled back");
        },
        { opening: `INSERT INTO pool_probe VALUES (42, 9, NULL)` },
      ),
    ).rejects.toThrow("rolled back");
    expect(await pool.$queryRawUnsafe(`SELECT id FROM pool_probe WHERE id >= 40 ORDER BY id`)).toEqual([{ id: 40 }, { id: 41 }]);
    // Without an opening statement the callback gets nothing.
    expect(await pool.$transaction(async (_tx, opened) => opened)).toBeUndefined();
  });

  it("commits without waiting for the WAL flush only when asked (asynchronousCommit), set with BEGIN before the opening statement", async () => {
    const setting = `SELECT current_setting('synchronous_commit') AS sync`;
    const asked = await pool.$transaction(async (tx, opened) => ({ opened, now: await tx.$queryRawUnsafe(setting) }), {
      asynchronousCommit: true,
      opening: setting,
    });
    expect(asked).toEqual({ opened: [{ sync: "off" }], now: [{ sync: "off" }] });
    // SET LOCAL: every other transaction, and every statement outside one, waits for its flush.
    expect(await pool.$transaction((tx) => tx.$queryRawUnsafe(setting))).toEqual([{ sync: "on" }]);
    expect(await pool.$queryRawUnsafe(setting)).toEqual([{ sync: "on" }]);
  });

  it("ends a transaction that outlives its timeout: rolled back, its later statements refused", async () => {
    const before = await count();
    let late: Promise<unknown> | undefined;
    await expect(
      pool.$transaction(
        async (tx) => {
          await tx.$executeRawUnsafe(`INSERT INTO pool_probe VALUES (4, 1, NULL)`);
          await new Promise((resolve) => setTimeout(resolve, 300));
          late = tx.$executeRawUnsafe(`INSERT INTO pool_probe VALUES (5, 1, NULL)`);
          await late;
        },
        { timeout: 100 },
      ),
    ).rejects.toThrow(/longer than its timeout/);
    await new Promise((resolve) => setTimeout(resolve, 400));
    await expect(late).rejects.toThrow(/Transaction already closed/);
    expect(await count()).toBe(before);
    await expect(pool.$queryRawUnsafe(`SELECT 1 AS one`)).resolves.toEqual([{ one: 1 }]);
  });

  it("survives the server dropping a transaction's connection between statements (a restart): the transaction fails, the pool goes on", async () => {
    const before = await count();
    // Without a listener on the checked-out connection, its 'error' event would end the process.
    await expect(
      pool.$transaction(async (tx) => {
        await tx.$executeRawUnsafe(`INSERT INTO pool_probe VALUES (6, 1, NULL)`);
        const [backend] = await tx.$queryRawUnsafe<Array<{ pid: number }>>(`SELECT pg_backend_pid() AS pid`);
        await pool.$queryRawUnsafe(`SELECT pg_terminate_backend($1)`, backend!.pid);
        await new Promise((resolve) => setTimeout(resolve, 200));
        await tx.$executeRawUnsafe(`INSERT INTO pool_probe VALUES (7, 1, NULL)`);
      }),
    ).rejects.toThrow(/terminat|Connection/i);
    expect(await count()).toBe(before);
    await expect(pool.$transaction((tx) => tx.$queryRawUnsafe(`SELECT 2 AS two`))).resolves.toEqual([{ two: 2 }]);
  });

  it("prepares each statement text once per connection (named statements)", async () => {
    const text = `SELECT amount FROM pool_probe WHERE id = $1`;
    for (let i = 0; i < 3; i++) await pool.$transaction((tx) => tx.$queryRawUnsafe(text, 1));
    const prepared = await pool.$transaction((tx) =>
      tx.$queryRawUnsafe<Array<{ statement: string }>>(`SELECT statement FROM pg_prepared_statements WHERE statement = $1`, text),
    );
    expect(prepared).toEqual([{ statement: text }]);
  });

  it("plans a transaction's lookups as plain index scans (SET LOCAL with its BEGIN); outside a transaction, the server's settings hold", async () => {
    await pool.$executeRawUnsafe(`CREATE TABLE pool_growing (id text PRIMARY KEY, payload text NOT NULL)`);
    // Analyzed empty, then grown: what the statistics of a fresh service's tables look like until autovacuum comes by.
    await pool.$executeRawUnsafe(`ANALYZE pool_growing`);
    await pool.$executeRawUnsafe(`INSERT INTO pool_growing SELECT 'id-' || i, repeat('x', 100) FROM generate_series(1, 5000) AS i`);
    const lookup = `EXPLAIN SELECT payload FROM pool_growing WHERE id = ANY($1::text[])`;
    const ids = Array.from({ length: 300 }, (_, i) => `id-${i * 7}`);
    const inside = await pool.$transaction((tx) => tx.$queryRawUnsafe<Array<{ "QUERY PLAN": string }>>(lookup, ids));
    expect(inside.map((row) => row["QUERY PLAN"]).join("\n")).toMatch(/^Index Scan using pool_growing_pkey/);
    const outside = await pool.$queryRawUnsafe<Array<{ enable_seqscan: string }>>(`SHOW enable_seqscan`);
    expect(outside).toEqual([{ enable_seqscan: "on" }]);
  });

  it("begins with preferIndexScans's settings when asked (custom plans too), and preferIndexScans then sends nothing", async () => {
    const settings = `SELECT current_setting('plan_cache_mode') AS plans, current_setting('enable_seqscan') AS seqscan`;
    const sent: string[] = [];
    const asked = await pool.$transaction(
      async (tx) => {
        const watched: SqlExecutor = {
          prefersIndexScans: tx.prefersIndexScans,
          $queryRawUnsafe: <T>(query: string, ...values: unknown[]) => {
            sent.push(query);
            return tx.$queryRawUnsafe<T>(query, ...values);
          },
          $executeRawUnsafe: (query: string, ...values: unknown[]) => {
            sent.push(query);
            return tx.$executeRawUnsafe(query, ...values);
          },
        };
        await preferIndexScans(watched);
        return { prefers: tx.prefersIndexScans, now: await tx.$queryRawUnsafe(settings) };
      },
      { preferIndexScans: true },
    );
    expect(asked).toEqual({ prefers: true, now: [{ plans: "force_custom_plan", seqscan: "off" }] });
    expect(sent).toEqual([]);
    // Not asked: the plain BEGIN's settings, and preferIndexScans sets custom plans with a statement of its own.
    const plain = await pool.$transaction(async (tx) => {
      const first = await tx.$queryRawUnsafe(settings);
      await preferIndexScans(tx);
      return { prefers: tx.prefersIndexScans, first, after: await tx.$queryRawUnsafe(settings) };
    });
    expect(plain).toEqual({
      prefers: false,
      first: [{ plans: "force_generic_plan", seqscan: "off" }],
      after: [{ plans: "force_custom_plan", seqscan: "off" }],
    });
    // Both were SET LOCAL: the next transaction starts from the pool's settings again, and outside one the server's hold.
    expect(await pool.$transaction((tx) => tx.$queryRawUnsafe(settings))).toEqual([{ plans: "force_generic_plan", seqscan: "off" }]);
    expect(await pool.$queryRawUnsafe(settings)).toEqual([{ plans: "auto", seqscan: "on" }]);
  });

  it("plans a transaction's statement once per connection, for any values, and that plan walks the index even when made on a table analyzed empty", async () => {
    const single = new SqlPool(database.url, { max: 1 });
    try {
      await single.$executeRawUnsafe(`CREATE TABLE pool_lookup (id int PRIMARY KEY, owner text NOT NULL, payload text NOT NULL)`);
      await single.$executeRawUnsafe(`CREATE INDEX pool_lookup_owner ON pool_lookup (owner)`);
      await single.$executeRawUnsafe(`ANALYZE pool_lookup`);
      const lookup = `SELECT payload FROM pool_lookup WHERE owner = ANY($1::text[])`;
      for (const owners of [["a"], ["a", "b"], ["c", "d", "e"]]) await single.$transaction((tx) => tx.$queryRawUnsafe(lookup, owners));
      // One plan for the three calls, made once (PostgreSQL's own choice planned each call anew).
      const [counts] = await single.$queryRawUnsafe<Array<{ generic: bigint; custom: bigint }>>(
        `SELECT generic_plans AS generic, custom_plans AS custom FROM pg_prepared_statements WHERE statement = $1`,
        lookup,
      );
      expect(counts).toEqual({ generic: 3n, custom: 0n });
      // The table grows past its statistics (autovacuum has not come by): the plan for any values is still the index's.
      await single.$executeRawUnsafe(
        `INSERT INTO pool_lookup SELECT i, 'owner-' || (i % 500), repeat('x', 50) FROM generate_series(1, 20000) AS i`,
      );
      const plan = await single.$transaction(async (tx) => {
        await tx.$executeRawUnsafe(`PREPARE pool_probe (text[]) AS ${lookup.replace("$1::text[]", "$1")}`);
        try {
          return (await tx.$queryRawUnsafe<Array<{ "QUERY PLAN": string }>>(`EXPLAIN EXECUTE pool_probe('{owner-1}')`)).map(
            (row) => row["QUERY PLAN"],
          );
        } finally {
          await tx.$executeRawUnsafe(`DEALLOCATE pool_probe`);
        }
      });
      // A plan for any values names the parameter, not this call's value.
      expect(plan.join("\n")).toMatch(/^Index Scan using pool_lookup_owner on pool_lookup[\s\S]*owner = ANY \(\$1\)/);
    } finally {
      await single.$disconnect();
    }
  });

  it("prepares an opening again when its connection lost it (DEALLOCATE, a pooler's reset), and takes the one a connection already holds", async () => {
    const single = new SqlPool(database.url, { max: 1 });
    const opening = `SELECT count(*) AS n FROM pool_probe WHERE id < 40`;
    const name = openingStatementName(opening);
    const prepared = async () =>
      (await single.$queryRawUnsafe<Array<{ name: string }>>(`SELECT name FROM pg_prepared_statements WHERE name = $1`, name)).length;
    try {
      // The connection holds the statement already (this pool never prepared it): PREPARE's
      // duplicate is that statement, and the opening runs.
      await single.$executeRawUnsafe(`PREPARE ${name} AS ${opening}`);
      const expected = await single.$queryRawUnsafe(opening);
      expect(await single.$transaction(async (_tx, opened) => opened, { opening })).toEqual(expected);
      // Gone behind the pool's back: the next transaction prepares it again and still gets its rows.
      await single.$executeRawUnsafe(`DEALLOCATE ${name}`);
      expect(await prepared()).toBe(0);
      expect(await single.$transaction(async (_tx, opened) => opened, { opening })).toEqual(expected);
      expect(await prepared()).toBe(1);
      // Lost inside a transaction that then commits: the one after it recovers the same way.
      await single.$transaction((tx) => tx.$executeRawUnsafe(`DEALLOCATE ${name}`), { opening });
      expect(await single.$transaction(async (_tx, opened) => opened, { opening })).toEqual(expected);
      // And a failing opening is still the caller's error, not retried.
      await expect(single.$transaction(async () => undefined, { opening: `SELECT 1 / 0` })).rejects.toThrow(/division by zero/);
    } finally {
      await single.$disconnect();
    }
  });
});
