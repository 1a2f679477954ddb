/** EventConsumer's batch mode: many messages per transaction, same idempotency and dead letters as one by one. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import {
  BATCHED_CONSUMER,
  connectJetStream,
  createEvent,
  eventHeaders,
  EventConsumer,
  type Event,
  type EventConsumerOptions,
  type JetStreamLink,
} from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { createTestDatabase, startTestNats, waitUntil } from "@vaultpay/testing";
import { SqlPool, type SqlTransaction as Tx } from "../packages/service/src/index.ts";

const logger = createLogger({ service: "batch-test", level: "silent" });

describe("EventConsumer with maxBatchMessages", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let link: JetStreamLink;
  // The consumers' pool in the services (SqlPool), as they run in production.
  let db: SqlPool;
  let consumer: EventConsumer<Tx>;
  const batchSizes: number[] = [];
  let poisonId = "";

  /** A consumer of the AUTH stream on this test's database and NATS. */
  const authConsumer = (
    options: Pick<EventConsumerOptions<Tx>, "name" | "filterSubject" | "handle"> & Partial<EventConsumerOptions<Tx>>,
  ): EventConsumer<Tx> => new EventConsumer<Tx>({ stream: "AUTH", db, js: link.js, jsm: link.jsm, logger, ...options });
  const effects = async () => (await sql.query(`SELECT count(*)::int AS n FROM batch_effect`)).rows[0].n as number;
  const publish = (event: Event, msgID = event.id) =>
    link.js.publish(event.type, JSON.stringify(event), { msgID, headers: eventHeaders(event) });
  const created = (n: number) =>
    createEvent("auth.user.created", { userId: `user-${n}`, role: "CUSTOMER" }, { correlationId: `corr-${n}`, actor: {} });

  beforeAll(async () => {
    [nats, database] = await Promise.all([startTestNats(), createTestDatabase("audit")]);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    // A primary key on the effect: a handler applied twice would fail the test loudly.
    await sql.query(`CREATE TABLE batch_effect (event_id uuid PRIMARY KEY)`);
    link = await connectJetStream(nats.url, "batch-test", logger);
    db = new SqlPool(database.url);
    const insert = (tx: Tx, ids: string[]) => tx.$executeRawUnsafe(`INSERT INTO batch_effect (event_id) SELECT unnest($1::uuid[])`, ids);
    consumer = authConsumer({
      name: "batch-test",
      filterSubject: "auth.>",
      maxDeliver: 2,
      backoffMs: [20],
      batchSize: 200,
      maxBatchMessages: 50,
      handle: async (event, tx) => {
        if (event.id === poisonId) throw new Error("poison");
        await insert(tx, [event.id]);
      },
      handleBatch: async (events, tx) => {
        batchSizes.push(events.length);
        if (events.some((event) => event.id === poisonId)) throw new Error("poison in batch");
        await insert(
          tx,
          events.map((event) => event.id),
        );
      },
    });
    await consumer.start();
  });

  afterAll(async () => {
    await consumer?.stop();
    await link?.nc.close();
    await db?.$disconnect();
    await sql?.end();
    await Promise.all([nats?.stop(), database?.drop()]);
  });

  it("handles a burst in batches, each event once, and skips redeliveries", async () => {
    const burst = Array.from({ length: 300 }, (_, n) => created(n));
    await Promise.all(burst.map((event) => publish(event)));
    await waitUntil(async () => (await effects()) === 300, "300 effects");
    expect(Math.max(...batchSizes)).toBeGreaterThan(1);
    expect(Math.max(...batchSizes)).toBeLessThanOrEqual(50);
    // Republished past JetStream's de-duplication, several in one batch with a new one.
    const fresh = created(1_000);
    await Promise.all([publish(burst[0]!, "again-0"), publish(burst[1]!, "again-1"), publish(fresh), publish(fresh, "again-fresh")]);
    await waitUntil(async () => (await effects()) === 301, "the new event's effect");
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await effects()).toBe(301);
  });

  it("falls back to one by one when a batch fails: the others commit, the poison and a malformed message go to DLQ", async () => {
    const events = Array.from({ length: 40 }, (_, n) => created(2_000 + n));
    poisonId = events[7]!.id;
    await Promise.all([
      ...events.map((event) => publish(event)),
      link.js.publish("auth.user.created", JSON.stringify({ not: "an event" }), { msgID: "malformed" }),
    ]);
    await waitUntil(async () => (await effects()) === 301 + 39, "39 effects");
    await waitUntil(async () => (await link.jsm.streams.info("DLQ")).state.messages === 2, "two dead letters");
    expect((await sql.query(`SELECT 1 FROM batch_effect WHERE event_id = $1`, [poisonId])).rowCount).toBe(0);
  });

  it("acknowledges the types it does not accept without a transaction, and handles the rest", async () => {
    const seen: Event[] = [];
    const selective = authConsumer({
      name: "batch-test-selective",
      filterSubject: "auth.>",
      accepts: ["auth.user.created"],
      handle: async (event) => void seen.push(event),
    });
    const processed = async () =>
      (await sql.query(`SELECT count(*)::int AS n FROM processed_event WHERE consumer = 'batch-test-selective'`)).rows[0].n as number;
    await selective.start();
    try {
      const failed = createEvent(
        "auth.login.failed",
        { userId: null, reason: "invalid_credentials", lockedForSeconds: null },
        { correlationId: "corr-f", actor: {} },
      );
      const wanted = created(3_000);
      await publish(failed);
      await publish(wanted);
      await waitUntil(async () => seen.some((event) => event.id === wanted.id), "the accepted event");
      await waitUntil(async () => {
        const info = await link.jsm.consumers.info("AUTH", "batch-test-selective");
        return info.num_ack_pending === 0 && info.num_pending === 0;
      }, "every message acknowledged");
      expect(seen.some((event) => event.id === failed.id)).toBe(false);
      expect(seen.every((event) => event.type === "auth.user.created")).toBe(true);
      // Only what it handled is recorded as processed.
      expect(await processed()).toBe(seen.length);
    } finally {
      await selective.stop();
    }
  });

  it("acknowledges accepted events its handler does not act on (decided on the parsed event), unrecorded, in batches and alone", async () => {
    const seen: Event[] = [];
    const acting = authConsumer({
      name: "batch-test-acting",
      filterSubject: "auth.user.created",
      maxBatchMessages: 50,
      batchSize: 200,
      // Acts only on customers: an admin's creation passes by.
      acts: (event) => event.type === "auth.user.created" && event.data.role === "CUSTOMER",
      handle: async (event) => void seen.push(event),
      handleBatch: async (events) => void seen.push(...events),
    });
    const processed = async () =>
      (await sql.query(`SELECT count(*)::int AS n FROM processed_event WHERE consumer = 'batch-test-acting'`)).rows[0].n as number;
    const admin = (n: number) =>
      createEvent("auth.user.created", { userId: `admin-${n}`, role: "ADMIN" }, { correlationId: `corr-a${n}`, actor: {} });
    await acting.start();
    try {
      // A burst (batched) and then one alone (its own batch of one).
      const burst = Array.from({ length: 60 }, (_, n) => (n % 3 === 0 ? admin(n) : created(4_000 + n)));
      await Promise.all(burst.map((event) => publish(event)));
      const lone = admin(999);
      await publish(lone);
      await waitUntil(async () => {
        const info = await link.jsm.consumers.info("AUTH", "batch-test-acting");
        return info.num_ack_pending === 0 && info.num_pending === 0 && info.delivered.stream_seq > 0;
      }, "every message acknowledged");
      const customers = burst.filter((event) => event.data.role === "CUSTOMER").map((event) => event.id);
      const handled = seen.map((event) => event.id);
      // Everything the stream held before counts too: only customers, each the handler saw was recorded.
      expect(seen.every((event) => event.type === "auth.user.created" && event.data.role === "CUSTOMER")).toBe(true);
      expect(handled).toEqual(expect.arrayContaining(customers));
      expect(handled).not.toContain(lone.id);
      expect(await processed()).toBe(new Set(handled).size);
    } finally {
      await acting.stop();
    }
  });
  it("a new durable with a start time skips what the stream held before it; an existing one keeps its position", async () => {
    const seen: string[] = [];
    const make = () =>
      authConsumer({
        name: "batch-test-from-time",
        filterSubject: "auth.user.created",
        startTime: new Date(),
        handle: async (event) => void seen.push(event.id),
      });
    // Everything the earlier tests published is older than the start time.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const first = make();
    await first.start();
    const fresh = created(5_000);
    await publish(fresh);
    await waitUntil(async () => seen.includes(fresh.id), "the event published after the start time");
    await first.stop();
    // Restarted later with a later start time: the durable's position, not the new time, decides.
    const missed = created(5_001);
    await publish(missed);
    const again = make();
    await again.start();
    try {
      await waitUntil(async () => seen.includes(missed.id), "the event published while it was stopped");
      expect(seen).toEqual([fresh.id, missed.id]);
    } finally {
      await again.stop();
    }
  });
  it("lingers for more messages only while fewer than batchLingerBelow wait, and starts the batch once that many are there", async () => {
    const batches: string[][] = [];
    const lingering = authConsumer({
      name: "batch-test-linger",
      filterSubject: "auth.user.created",
      startTime: new Date(),
      maxBatchMessages: 50,
      batchSize: 100,
      // Far longer than the test: a batch that waited for it would time the test out.
      batchLingerMs: 600_000,
      batchLingerBelow: 5,
      handle: async () => undefined,
      handleBatch: async (events) => void batches.push(events.map((event) => event.id)),
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await lingering.start();
    try {
      const events = Array.from({ length: 5 }, (_, n) => created(6_000 + n));
      // One alone waits for others to join it.
      await publish(events[0]!);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(batches).toEqual([]);
      // The fifth ends the wait: the five go in one transaction.
      for (const event of events.slice(1)) await publish(event);
      await waitUntil(async () => batches.length === 1, "the batch of five");
      expect(batches).toEqual([events.map((event) => event.id)]);
    } finally {
      await lingering.stop();
    }
  });

  it("with the saga's settings, a backlog is applied in transactions of BATCHED_CONSUMER.maxBatchMessages, each event once", async () => {
    // The saga's consumers once took 32 per transaction: in the saga benchmark transactions' answer
    // durable then fell behind the gateway (time to COMPLETED p50 4–11 s against 0.8–1.0 s at 128,
    // bench/saga-results.md, 2026-12-07). A backlog that waited while a transaction ran goes whole.
    const batches: string[][] = [];
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const saga = authConsumer({
      name: "batch-test-saga-settings",
      filterSubject: "auth.user.created",
      startTime: new Date(),
      ...BATCHED_CONSUMER,
      handle: async () => undefined,
      handleBatch: async (events) => {
        batches.push(events.map((event) => event.id));
        if (batches.length === 1) await held;
      },
    });
    await saga.start();
    try {
      const first = created(7_000);
      await publish(first);
      await waitUntil(async () => batches.length === 1, "the first batch, held open");
      const backlog = Array.from({ length: 400 }, (_, n) => created(7_001 + n));
      await Promise.all(backlog.map((event) => publish(event)));
      // Delivered past what the next transaction takes: a whole batch waits for it.
      const delivered = async () => (await link.jsm.consumers.info("AUTH", "batch-test-saga-settings")).num_ack_pending;
      await waitUntil(async () => (await delivered()) > BATCHED_CONSUMER.maxBatchMessages, "a batch's worth delivered");
      release();
      await waitUntil(async () => batches.flat().length === 401, "the backlog applied");
      expect(batches.flat().sort()).toEqual([first, ...backlog].map((event) => event.id).sort());
      expect(batches[1]).toHaveLength(BATCHED_CONSUMER.maxBatchMessages);
      expect(Math.max(...batches.map((batch) => batch.length))).toBe(BATCHED_CONSUMER.maxBatchMessages);
      expect(BATCHED_CONSUMER.maxBatchMessages).toBeGreaterThan(32);
    } finally {
      release();
      await saga.stop();
    }
  });

  it("replicas creating the same new durable at once, each with its own start time, all start on the one that won", async () => {
    // A service's replicas started together: each asks for the durable, finds none, and adds it
    // with a start time of its own (a moment apart), so every add but the first names another config.
    const replicas = Array.from({ length: 4 }, (_, n) =>
      authConsumer({
        name: "replicas-at-once",
        filterSubject: "auth.user.created",
        startTime: new Date(Date.now() - 60_000 - n * 1_000),
        handle: async () => undefined,
      }),
    );
    try {
      await Promise.all(replicas.map((replica) => replica.start()));
      const info = await link.jsm.consumers.info("AUTH", "replicas-at-once");
      expect(info.config.filter_subject).toBe("auth.user.created");
    } finally {
      await Promise.all(replicas.map((replica) => replica.stop()));
    }
  });
});
