/**
 * The relay's claim stays cheap however many rows were published since the last VACUUM: with
 * preferIndexScans it walks the outbox's index in order (and marks dead entries as it meets them)
 * instead of a bitmap scan that visits every dead entry on every claim. And the setting ends with
 * its transaction: the pooled connection goes back as it came.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { CLAIM_OUTBOX_ROWS, claimOutboxRowsSql, preferIndexScans, type SqlExecutor } from "@vaultpay/events";
import { SqlPool } from "../packages/service/src/index.ts";
import { createTestDatabase } from "@vaultpay/testing";

interface PlanNode {
  "Node Type": string;
  "Shared Hit Blocks"?: number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

describe("the outbox relay's claim", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  /** The events package's executor shape over this one connection. */
  let executor: SqlExecutor;

  beforeAll(async () => {
    database = await createTestDatabase("audit");
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    executor = {
      $executeRawUnsafe: async (query, ...values) => (await sql.query(query, values)).rowCount ?? 0,
      $queryRawUnsafe: async <T>(query: string, ...values: unknown[]) => (await sql.query(query, values)).rows as T,
    };
    // 20,000 rows published (each leaves a dead index entry until VACUUM), then 3 pending, with
    // payloads the size of a transfer's events (~600 bytes). As in a running service: statistics
    // from when the table was small, no VACUUM since. On these, a claim ordered by seq alone took
    // the primary key filtered by published_at, reading the whole table: ~20 ms per claim.
    await sql.query(`ALTER TABLE outbox_event SET (autovacuum_enabled = false)`);
    await sql.query(`ANALYZE outbox_event`);
    await sql.query(
      `INSERT INTO outbox_event (id, subject, type, payload)
         SELECT gen_random_uuid(), 'x', 'x', jsonb_build_object('data', repeat('x', 600)) FROM generate_series(1, 20000)`,
    );
    await sql.query(`UPDATE outbox_event SET published_at = now()`);
    await sql.query(
      `INSERT INTO outbox_event (id, subject, type, payload) SELECT gen_random_uuid(), 'x', 'x', '{}'::jsonb FROM generate_series(1, 3)`,
    );
  });
  afterAll(async () => {
    await sql?.end();
    await database?.drop();
  });

  /** The claim's plan as run under preferIndexScans (rolled back: nothing is marked); inline by default. */
  async function claimPlan(statement = CLAIM_OUTBOX_ROWS.replace("$1", "100")): Promise<{ nodes: PlanNode[]; claimed: number }> {
    await sql.query("BEGIN");
    try {
      await preferIndexScans(executor);
      const explained = await sql.query<{ "QUERY PLAN": Array<{ Plan: PlanNode & { "Actual Rows": number } }> }>(
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${statement}`,
      );
      const root = explained.rows[0]!["QUERY PLAN"][0]!.Plan;
      return { nodes: nodes(root), claimed: root["Actual Rows"] };
    } finally {
      await sql.query("ROLLBACK");
    }
  }

  /** The outbox table's size in pages. */
  async function tablePages(): Promise<number> {
    return Number((await sql.query(`SELECT pg_relation_size('outbox_event') / 8192 AS pages`)).rows[0].pages);
  }

  /** Pages read finding the rows to claim (the Limit under the update), against the table's size in pages. */
  async function pagesRead(plan: PlanNode[]): Promise<{ read: number; table: number }> {
    const limit = plan.find((node) => node["Node Type"] === "Limit")!;
    return { read: (limit["Shared Hit Blocks"] ?? 0) + (limit["Shared Read Blocks"] ?? 0), table: await tablePages() };
  }

  it("walks the index in order and touches a handful of pages once dead entries were met", async () => {
    const first = await claimPlan();
    expect(first.claimed).toBe(3);
    // The rows are found by scans (the update then goes to their addresses: a TID scan).
    const scans = first.nodes
      .map((node) => node["Node Type"])
      .filter((type) => type.endsWith("Scan") && type !== "Subquery Scan" && type !== "Tid Scan");
    expect(scans.length).toBeGreaterThan(0);
    expect(scans.every((type) => type === "Index Scan")).toBe(true);
    const again = await claimPlan();
    expect(again.claimed).toBe(3);
    // The dead entries the first scan met are marked now: finding the rows reads the index's leaf
    // pages and the three rows, not the table (a bitmap or sequential scan reads all of it, every time).
    const { read, table } = await pagesRead(again.nodes);
    expect(read).toBeLessThan(table / 3);
  });

  it("stays an index scan as a prepared statement, past the executions after which PostgreSQL may cache a generic plan", async () => {
    // As the services run it (statementName names their statements): prepared once per connection.
    await sql.query(`PREPARE claim(int) AS ${CLAIM_OUTBOX_ROWS}`);
    try {
      let last: PlanNode[] = [];
      for (let run = 0; run < 8; run++) last = (await claimPlan("EXECUTE claim(100)")).nodes;
      const { read, table } = await pagesRead(last);
      expect(read).toBeLessThan(table / 3);
    } finally {
      await sql.query(`DEALLOCATE claim`);
    }
  });

  it("is planned once per connection as SqlPool opens the relay's transaction with it, and that plan walks the index", async () => {
    const pool = new SqlPool(database.url, { max: 1 });
    const rollback = new Error("rolled back: nothing is marked");
    const claimed: number[] = [];
    try {
      for (let run = 0; run < 3; run++) {
        await expect(
          pool.$transaction(
            async (_tx, opened) => {
              claimed.push(opened!.length);
              throw rollback;
            },
            { opening: claimOutboxRowsSql(100), asynchronousCommit: true },
          ),
        ).rejects.toBe(rollback);
      }
      expect(claimed).toEqual([3, 3, 3]);
      let plan: { prepared: { name: string; generic: bigint; custom: bigint }; nodes: PlanNode[] } | undefined;
      await expect(
        pool.$transaction(async (tx) => {
          const [prepared] = await tx.$queryRawUnsafe<Array<{ name: string; generic: bigint; custom: bigint }>>(
            `SELECT name, generic_plans AS generic, custom_plans AS custom FROM pg_prepared_statements WHERE name LIKE 'vp_opening_%'`,
          );
          const [explained] = await tx.$queryRawUnsafe<Array<{ "QUERY PLAN": Array<{ Plan: PlanNode }> }>>(
            `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE ${prepared!.name}`,
          );
          plan = { prepared: prepared!, nodes: nodes(explained!["QUERY PLAN"][0]!.Plan) };
          throw rollback;
        }),
      ).rejects.toBe(rollback);
      // Planned at its first call, on the statistics of a small table, and reused by every later one.
      expect(plan!.prepared).toMatchObject({ generic: 3n, custom: 0n });
      const { read, table } = await pagesRead(plan!.nodes);
      expect(read).toBeLessThan(table / 3);
    } finally {
      await pool.$disconnect();
    }
  });

  it("stays cheap right after a prune, on statistics that call the table empty while its dead rows remain", async () => {
    // `pnpm reconcile --prune` deletes the published rows; autovacuum's ANALYZE may come by before
    // its VACUUM does, and then the planner sees no live rows at all. With the claim as a semi-join
    // (`seq IN (SELECT …)`) every plan looked free, and the one taken looked each claimed row up by
    // a walk of the whole (published_at, seq) index (PostgreSQL 15 walked the primary key as the
    // join's outer side instead), on every claim until the next ANALYZE. In the saga
    // benchmark's open loop after a prune: ~100 ms per claim, and the hops behind transactions'
    // relay 1.3–2.3 s at p50 instead of ~25 ms (bench/saga-results.md, 2026-12-06).
    await sql.query(`DELETE FROM outbox_event WHERE published_at IS NOT NULL`);
    await sql.query(`ANALYZE outbox_event`);
    const { rows } = await sql.query(`SELECT reltuples FROM pg_class WHERE relname = 'outbox_event'`);
    expect(Number(rows[0].reltuples)).toBeLessThan(10);
    await sql.query(`PREPARE claim_after_prune AS ${claimOutboxRowsSql(100)}`);
    try {
      // The poll's claim (rows of a minimum age) too: its filter rides on the same index walk.
      for (const statement of [claimOutboxRowsSql(100), claimOutboxRowsSql(100, 1), "EXECUTE claim_after_prune"]) {
        const plan = await claimPlan(statement);
        expect(plan.claimed, statement).toBe(3);
        expect(
          plan.nodes.map((node) => node["Node Type"]),
          statement,
        ).toContain("Tid Scan");
        const root = plan.nodes[0]!;
        const table = await tablePages();
        // Three rows found, locked, updated and their new index entries written: a few pages each.
        expect((root["Shared Hit Blocks"] ?? 0) + (root["Shared Read Blocks"] ?? 0), statement).toBeLessThan(table / 10);
      }
    } finally {
      await sql.query(`DEALLOCATE claim_after_prune`);
    }
  });

  it("gives the settings back at the end of the transaction", async () => {
    const settings = async () =>
      (
        await sql.query(
          `SELECT current_setting('enable_bitmapscan') AS bitmap, current_setting('enable_seqscan') AS seq,
                  current_setting('plan_cache_mode') AS plans`,
        )
      ).rows[0];
    await sql.query("BEGIN");
    await preferIndexScans(executor);
    expect(await settings()).toEqual({ bitmap: "off", seq: "off", plans: "force_custom_plan" });
    await sql.query("COMMIT");
    expect(await settings()).toEqual({ bitmap: "on", seq: "on", plans: "auto" });
  });
});
