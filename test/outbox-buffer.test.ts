/** withBufferedOutbox: the events a transaction appends are written in one statement, in order, exactly. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import {
  appendToOutbox,
  createEvent,
  outboxRowsCte,
  outboxRowsParameters,
  takeBufferedEvents,
  withBufferedOutbox,
  type Event,
} from "@vaultpay/events";
import { createTestDatabase } from "@vaultpay/testing";
import { createDb } from "../subgraphs/audit/src/db.ts";

describe("withBufferedOutbox", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: ReturnType<typeof createDb>;
  let sql: pg.Client;

  const refund = (n: number, reason: string) =>
    createEvent(
      "transaction.refund.requested",
      { transferId: `transfer-${n}`, fromAccountId: `account-${n}`, amountMinor: "1000", reason },
      { correlationId: `corr-${n}`, actor: {} },
    );
  const statusChanged = () =>
    createEvent(
      "transaction.status.changed",
      {
        transferId: randomUUID(),
        userId: randomUUID(),
        status: "DEBITED",
        previousStatus: "PENDING",
        failureReason: null,
        changedAt: new Date().toISOString(),
      },
      { correlationId: "corr-status", actor: {} },
    );
  const outbox = async () =>
    (await sql.query<{ id: string; subject: string; payload: Event }>(`SELECT id::text, subject, payload FROM outbox_event ORDER BY seq`))
      .rows;

  beforeAll(async () => {
    database = await createTestDatabase("audit");
    db = createDb(database.url);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
  });
  afterAll(async () => {
    await sql?.end();
    await db?.$disconnect();
    await database?.drop();
  });

  it("writes what the transaction appended, in append order, byte for byte", async () => {
    // Quotes, backslashes, braces and non-ASCII text: the array literal must carry them unchanged.
    const reasons = [`phone "work"`, "back\\slash", "{braces, comma}", "मोबाइल ₹", "plain"];
    const status = statusChanged();
    const events = [...reasons.map((reason, n) => refund(n, reason)), status];
    const { result, events: committed } = await db.$transaction((tx) =>
      withBufferedOutbox(tx, async () => {
        for (const event of events) await appendToOutbox(tx, event);
        // Nothing reaches the table before the work ends.
        return (await tx.$queryRawUnsafe<Array<{ n: number }>>(`SELECT count(*)::int AS n FROM outbox_event`))[0]!.n;
      }),
    );
    expect(result).toBe(0);
    expect(committed).toHaveLength(events.length);
    expect(committed).toEqual(events); // what the relay publishes once this commits
    const rows = await outbox();
    expect(rows.map((row) => row.id)).toEqual(events.map((event) => event.id));
    // Each on its type's subject; a status change on its transfer's own.
    expect(rows.map((row) => row.subject)).toEqual([
      ...reasons.map(() => "transaction.refund.requested"),
      `transaction.status.changed.${status.data.transferId}`,
    ]);
    expect(rows.map((row) => row.payload)).toEqual(JSON.parse(JSON.stringify(events)));
  });

  it("writes nothing when the work throws, and a nested call leaves the writing to the outer one", async () => {
    const before = (await outbox()).length;
    await expect(
      db.$transaction((tx) =>
        withBufferedOutbox(tx, async () => {
          await appendToOutbox(tx, refund(100, "lost"));
          throw new Error("handler failed");
        }),
      ),
    ).rejects.toThrow("handler failed");
    expect((await outbox()).length).toBe(before);

    const nested = await db.$transaction((tx) =>
      withBufferedOutbox(tx, async () => {
        await appendToOutbox(tx, refund(200, "outer"));
        const inner = await withBufferedOutbox(tx, () => appendToOutbox(tx, refund(201, "inner")));
        return inner.events.length;
      }),
    );
    expect(nested.result).toBe(0);
    expect(nested.events).toHaveLength(2);
    expect(nested.events.map((event) => event.data)).toMatchObject([{ reason: "outer" }, { reason: "inner" }]);
    expect((await outbox()).slice(before).map((row) => row.payload.data)).toMatchObject([{ reason: "outer" }, { reason: "inner" }]);
  });

  it("hands the events appended so far to a statement of the handler's (outboxRowsCte): written once, in order, counted", async () => {
    const before = (await outbox()).length;
    const [first, second, third] = [refund(300, "first"), refund(301, "second"), refund(302, "third")];
    const { result, events } = await db.$transaction((tx) =>
      withBufferedOutbox(tx, async () => {
        await appendToOutbox(tx, first!);
        await appendToOutbox(tx, second!);
        const taken = takeBufferedEvents(tx);
        // The handler's own write, with the outbox rows riding along in the same statement.
        await tx.$queryRawUnsafe(`WITH ${outboxRowsCte(1)} SELECT 1`, ...outboxRowsParameters(taken));
        // Appended after the take: withBufferedOutbox writes it at the end, after them.
        await appendToOutbox(tx, third!);
        return taken.map((event) => event.id);
      }),
    );
    expect(result).toEqual([first!.id, second!.id]);
    expect(events).toHaveLength(3);
    expect(events.map((event) => event.id)).toEqual([first!.id, second!.id, third!.id]);
    expect((await outbox()).slice(before).map((row) => row.id)).toEqual([first!.id, second!.id, third!.id]);
    // Outside withBufferedOutbox an event is written when appended: nothing to take.
    const alone = refund(303, "alone");
    expect(
      await db.$transaction(async (tx) => {
        await appendToOutbox(tx, alone);
        return takeBufferedEvents(tx);
      }),
    ).toEqual([]);
    expect((await outbox()).slice(before).map((row) => row.id)).toEqual([first!.id, second!.id, third!.id, alone.id]);
    // Written alone (its own statement), a status change is on its transfer's subject too.
    const status = statusChanged();
    await db.$transaction((tx) => appendToOutbox(tx, status));
    expect((await outbox()).at(-1)).toMatchObject({ id: status.id, subject: `transaction.status.changed.${status.data.transferId}` });
  });
});
