/** The database agrees with the one table of transfer statuses (TRANSFER_LIFECYCLE), on a migrated database. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { TRANSFER_LIFECYCLE, TRANSFER_STATUSES, isTerminalStatus } from "@vaultpay/events";
import { createTestDatabase } from "@vaultpay/testing";

describe("transfer statuses in the database", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let client: pg.Client;

  beforeAll(async () => {
    database = await createTestDatabase("transactions");
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await database?.drop();
  });

  it("has the table's statuses as its enum, in the table's order", async () => {
    const { rows } = await client.query<{ status: string }>(`SELECT unnest(enum_range(NULL::"TransferStatus"))::text AS status`);
    expect(rows.map((row) => row.status)).toEqual([...TRANSFER_STATUSES]);
    const ranks = TRANSFER_STATUSES.map((status) => TRANSFER_LIFECYCLE[status].rank);
    expect([...ranks].sort((a, b) => a - b)).toEqual(ranks);
  });

  it("lets exactly the terminal statuses have no saga step left (CHECK transfer_terminal_has_no_step)", async () => {
    const { rows } = await client.query<{ definition: string }>(
      `SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conname = 'transfer_terminal_has_no_step'`,
    );
    // e.g. CHECK (((status = ANY (ARRAY['COMPLETED'::"TransferStatus", …])) = (step = 'NONE'::"SagaStep")))
    const definition = rows[0]!.definition;
    const statusSide = definition.slice(0, definition.indexOf("step"));
    const listed = statusSide.match(/'([A-Z]+)'/g)?.map((quoted) => quoted.slice(1, -1)) ?? [];
    expect(listed.sort()).toEqual(TRANSFER_STATUSES.filter(isTerminalStatus).sort());
  });

  it("moves only forward: no transition leads to a lower rank, terminal statuses lead nowhere", () => {
    for (const status of TRANSFER_STATUSES) {
      const { rank, terminal, next } = TRANSFER_LIFECYCLE[status];
      expect(terminal).toBe(next.length === 0);
      for (const to of next) expect(TRANSFER_LIFECYCLE[to].rank).toBeGreaterThan(rank);
    }
  });
});
