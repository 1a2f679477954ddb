/**
 * OutboxRelay.publishCommitted: events a process has just committed go out from memory, in commit
 * order, without waiting for the relay's claim, and their rows are marked published. Whatever does
 * not go out stays pending for the claim; a row the relay holds claimed is not waited for.
 * Real PostgreSQL (SqlPool, as the services run it) and a real JetStream.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import {
  appendToOutbox,
  CLAIM_OUTBOX_ROWS,
  connectJetStream,
  createEvent,
  MARK_OUTBOX_ROWS_PUBLISHED,
  OutboxRelay,
  withBufferedOutbox,
  type Event,
  type JetStreamLink,
  type SqlDatabase,
} from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { createTestDatabase, startTestNats, waitUntil } from "@vaultpay/testing";
import { SqlPool } from "../packages/service/src/index.ts";

const logger = createLogger({ service: "outbox-direct-test", level: "silent" });

describe("OutboxRelay.publishCommitted", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let link: JetStreamLink;
  let db: SqlPool;
  let relay: OutboxRelay;
  /** The statements the relay ran in its transactions (its claims among them). */
  const statements: string[] = [];

  const created = (n: number, type: "auth.user.created" | "nostream.poison" = "auth.user.created"): Event =>
    type === "auth.user.created"
      ? createEvent("auth.user.created", { userId: `user-${n}`, role: "CUSTOMER" }, { correlationId: `corr-${n}`, actor: {} })
      : ({ ...created(n), type } as unknown as Event);
  /** Commits the events to the outbox as a consumer's transaction does; returns them as written. */
  const commit = (events: Event[]) =>
    db.$transaction(
      async (tx) =>
        (
          await withBufferedOutbox(tx, async () => {
            for (const event of events) await appendToOutbox(tx, event);
          })
        ).events,
    );
  const pending = async (ids: string[]) =>
    (await sql.query(`SELECT id::text FROM outbox_event WHERE id = ANY($1::uuid[]) AND published_at IS NULL ORDER BY seq`, [ids])).rows.map(
      (row) => row.id as string,
    );
  /** The ids of the AUTH stream's messages from this sequence on, in stream order. */
  const streamIds = async (fromSeq: number) => {
    const ids: string[] = [];
    const last = (await link.jsm.streams.info("AUTH")).state.last_seq;
    for (let seq = fromSeq; seq <= last; seq++) {
      const message = await link.jsm.streams.getMessage("AUTH", { seq });
      if (message) ids.push(message.json<Event>().id);
    }
    return ids;
  };

  beforeAll(async () => {
    [nats, database] = await Promise.all([startTestNats(), createTestDatabase("audit")]);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    link = await connectJetStream(nats.url, "outbox-direct-test", logger);
    db = new SqlPool(database.url);
    // The claim runs once at start (an empty outbox), then only when kicked: anything published
    // within the test's waits went out through publishCommitted.
    const watched: SqlDatabase = {
      $executeRawUnsafe: (query, ...values) => db.$executeRawUnsafe(query, ...values),
      $queryRawUnsafe: <T>(query: string, ...values: unknown[]) => db.$queryRawUnsafe<T>(query, ...values),
      $transaction: (fn, options) =>
        db.$transaction(
          (tx) =>
            fn({
              prefersIndexScans: tx.prefersIndexScans,
              $executeRawUnsafe: (query, ...values) => (statements.push(query), tx.$executeRawUnsafe(query, ...values)),
              $queryRawUnsafe: <T>(query: string, ...values: unknown[]) => (
                statements.push(query), tx.$queryRawUnsafe<T>(query, ...values)
              ),
            }),
          options,
        ),
    };
    relay = new OutboxRelay({ db: watched, js: link.js, logger, idleMs: 600_000 });
    relay.start();
    await waitUntil(async () => statements.includes(CLAIM_OUTBOX_ROWS), "the relay's first claim");
  });
  afterAll(async () => {
    await relay?.stop();
    await link?.nc.close();
    await db?.$disconnect();
    await sql?.end();
    await nats?.stop();
    await database?.drop();
  });

  it("publishes committed events in commit order, from memory, and marks their rows", async () => {
    statements.length = 0;
    const firstSeq = (await link.jsm.streams.info("AUTH")).state.last_seq + 1;
    const first = await commit([created(1), created(2)]);
    const second = await commit([created(3)]);
    relay.publishCommitted(first);
    relay.publishCommitted(second);
    const ids = [...first, ...second].map((event) => event.id);
    await waitUntil(async () => (await pending(ids)).length === 0, "the rows to be marked published", 10_000);
    expect(await streamIds(firstSeq)).toEqual(ids);
    // No claim ran: the rows were only marked, by id.
    expect(statements).not.toContain(CLAIM_OUTBOX_ROWS);
    expect(statements).toContain(MARK_OUTBOX_ROWS_PUBLISHED);
  });

  it("leaves an event that cannot be published to the relay, without holding back the others", async () => {
    // No stream captures this subject: JetStream answers "no responders".
    const [poison, after] = await commit([created(4, "nostream.poison"), created(5)]);
    relay.publishCommitted([poison!, after!]);
    await waitUntil(async () => (await pending([after!.id])).length === 0, "the event after the poison to be marked", 10_000);
    expect(await pending([poison!.id])).toEqual([poison!.id]);
    await sql.query(`DELETE FROM outbox_event WHERE id = $1`, [poison!.id]);
  });

  it("does not wait for a row the relay holds claimed; the claim's copy is dropped as a duplicate", async () => {
    const [claimed] = await commit([created(6)]);
    const before = (await link.jsm.streams.info("AUTH")).state.messages;
    // The relay's claim, in flight: the row locked by another transaction.
    const claimer = new pg.Client({ connectionString: database.url });
    await claimer.connect();
    try {
      await claimer.query("BEGIN");
      await claimer.query(`SELECT seq FROM outbox_event WHERE id = $1 FOR UPDATE`, [claimed!.id]);
      relay.publishCommitted([claimed!]);
      // A later commit is published and marked while the claim still holds the first row: the
      // publisher skipped that row's mark instead of stalling behind the claim.
      const [later] = await commit([created(7)]);
      relay.publishCommitted([later!]);
      await waitUntil(async () => (await pending([later!.id])).length === 0, "the later row to be marked", 10_000);
      expect(await pending([claimed!.id])).toEqual([claimed!.id]);
      expect((await link.jsm.streams.info("AUTH")).state.messages).toBe(before + 2);
      await claimer.query("ROLLBACK");
    } finally {
      await claimer.end();
    }
    // The relay claims it now (as its poll would) and publishes the same message id again: one copy.
    statements.length = 0;
    expect(await relay.publishBatch()).toMatchObject({ claimed: 1, published: 1 });
    expect(statements).toContain(CLAIM_OUTBOX_ROWS);
    expect(await pending([claimed!.id])).toEqual([]);
    expect((await link.jsm.streams.info("AUTH")).state.messages).toBe(before + 2);
  });
});
