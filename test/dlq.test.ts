/** Dead letters: a message that keeps failing lands in DLQ with its error; replay delivers it again. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import {
  connectJetStream,
  DeadLetterQueue,
  DLQ_HEADERS,
  EventConsumer,
  createEvent,
  eventHeaders,
  publishDeadLetter,
  replayDeadLetters,
  type JetStreamLink,
} from "@vaultpay/events";
import { createLogger, createMetrics } from "@vaultpay/kit";
import { createTestDatabase, parsePrometheusText, startTestNats, valueOf, waitUntil } from "@vaultpay/testing";
import { SqlPool, type SqlTransaction } from "../packages/service/src/index.ts";

const logger = createLogger({ service: "dlq-test", level: "silent" });

describe("DLQ and replay", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let link: JetStreamLink;
  // The consumers' pool in the services (SqlPool), as they run in production.
  let db: SqlPool;
  let consumer: EventConsumer<SqlTransaction>;
  let causeFixed = false;
  const handled: string[] = [];
  const metrics = createMetrics("dlq-test");

  beforeAll(async () => {
    [nats, database] = await Promise.all([startTestNats(), createTestDatabase("audit")]);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    await sql.query(`CREATE TABLE dlq_effect (event_id uuid PRIMARY KEY)`);
    link = await connectJetStream(nats.url, "dlq-test", logger);
    db = new SqlPool(database.url);
    consumer = new EventConsumer({
      name: "audit-dlq-test",
      stream: "ACCOUNTS",
      filterSubject: "account.>",
      db,
      js: link.js,
      jsm: link.jsm,
      logger,
      maxDeliver: 3,
      backoffMs: [50],
      metrics,
      handle: async (event, tx) => {
        handled.push(event.id);
        if (!causeFixed) throw new Error("ledger unavailable");
        await tx.$executeRawUnsafe(`INSERT INTO dlq_effect (event_id) VALUES ($1::uuid)`, event.id);
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

  it("moves a message that keeps failing to DLQ with its error, then replays it once fixed", async () => {
    const event = createEvent(
      "account.created",
      { accountId: "acc-1", userId: "user-1", type: "CURRENT", currency: "INR", maskedNumber: "XXXX0001", numberBlindIndex: "bi-0001" },
      { correlationId: "corr-dlq", actor: {} },
    );
    await link.js.publish(event.type, JSON.stringify(event), { msgID: event.id, headers: eventHeaders(event) });

    const dlqInfo = await waitUntil(async () => {
      const info = await link.jsm.streams.info("DLQ");
      return info.state.messages === 1 && info;
    }, "the dead letter");
    expect(handled.filter((id) => id === event.id)).toHaveLength(3);
    const letter = (await link.jsm.streams.getMessage("DLQ", { seq: dlqInfo.state.last_seq }))!;
    expect(letter.subject).toBe("dlq.ACCOUNTS.audit-dlq-test");
    expect(letter.header.get(DLQ_HEADERS.subject)).toBe("account.created");
    expect(letter.header.get(DLQ_HEADERS.error)).toBe("Error: ledger unavailable");
    expect(letter.header.get(DLQ_HEADERS.deliveries)).toBe("3");
    expect(letter.header.get(DLQ_HEADERS.eventId)).toBe(event.id);
    expect(letter.header.get("Vp-Correlation-Id")).toBe("corr-dlq");
    expect((await sql.query(`SELECT count(*)::int AS n FROM dlq_effect`)).rows[0].n).toBe(0);
    // What an operator sees: two redeliveries (deliveries 2 and 3) and one dead letter.
    const samples = parsePrometheusText(await metrics.registry.metrics());
    expect(valueOf(samples, "vaultpay_consumer_redeliveries_total", { consumer: "audit-dlq-test" })).toBe(2);
    expect(valueOf(samples, "vaultpay_consumer_dead_letters_total", { consumer: "audit-dlq-test" })).toBe(1);

    // What an operator reads of it (the audit subgraph's deadLetters): where from and why, no payload.
    const queue = new DeadLetterQueue(link.js, link.jsm, logger);
    const [summary] = await queue.list({ consumer: "audit-dlq-test", limit: 10 });
    expect(summary).toMatchObject({
      dlqSeq: dlqInfo.state.last_seq,
      consumer: "audit-dlq-test",
      stream: "ACCOUNTS",
      subject: "account.created",
      eventId: event.id,
      eventType: "account.created",
      correlationId: "corr-dlq",
      deliveries: 3,
      error: "Error: ledger unavailable",
    });
    expect(summary!.deadLetteredAt).toBeInstanceOf(Date);
    expect(summary).not.toHaveProperty("data");
    expect(await queue.list({ consumer: "someone-else", limit: 10 })).toEqual([]);
    expect(await queue.countByConsumer()).toEqual(new Map([["audit-dlq-test", 1]]));
    expect(await queue.consumerNames()).toContain("audit-dlq-test");

    causeFixed = true;
    const result = await replayDeadLetters({ js: link.js, jsm: link.jsm, logger });
    expect(result).toEqual({ replayed: 1, remaining: 0 });
    await waitUntil(async () => (await sql.query(`SELECT event_id FROM dlq_effect`)).rows[0]?.event_id === event.id, "the replayed effect");
    expect((await link.jsm.streams.info("DLQ")).state.messages).toBe(0);

    // A second replay finds nothing; the effect stays applied once.
    expect(await replayDeadLetters({ js: link.js, jsm: link.jsm, logger })).toEqual({ replayed: 0, remaining: 0 });
    expect((await sql.query(`SELECT count(*)::int AS n FROM dlq_effect`)).rows[0].n).toBe(1);
  });

  it("sends a malformed event to DLQ at once, without retries", async () => {
    const before = (await link.jsm.streams.info("DLQ")).state.last_seq;
    await link.js.publish("account.created", JSON.stringify({ type: "account.created", data: {} }), { msgID: "malformed-1" });
    const info = await waitUntil(async () => {
      const current = await link.jsm.streams.info("DLQ");
      return current.state.last_seq > before && current;
    }, "the malformed dead letter");
    const letter = (await link.jsm.streams.getMessage("DLQ", { seq: info.state.last_seq }))!;
    expect(letter.header.get(DLQ_HEADERS.deliveries)).toBe("1");
    expect(letter.header.get(DLQ_HEADERS.error)).toMatch(/^InvalidEventError: bad envelope/);
  });

  it("lists by consumer past replayed letters, and replays only the letters named", async () => {
    const queue = new DeadLetterQueue(link.js, link.jsm, logger);
    for (const letter of await queue.list({ limit: 100 })) await link.jsm.streams.deleteMessage("DLQ", letter.dlqSeq);
    // GATEWAY: no consumer of this test reads it, so the replayed payloads stay where they land.
    const originals: number[] = [];
    for (let n = 1; n <= 5; n++) originals[n] = (await link.js.publish(`gateway.test.${n}`, `payload-${n}`)).seq;
    const letter = (consumerName: string, n: number) => ({
      subject: `gateway.test.${n}`,
      stream: "GATEWAY",
      streamSeq: originals[n]!,
      consumer: consumerName,
      deliveries: 5,
      error: "Error: line one\nline two",
      data: new TextEncoder().encode(`payload-${n}`),
    });
    for (let n = 1; n <= 5; n++) await publishDeadLetter(link.js, letter(n % 2 === 0 ? "even-consumer" : "odd-consumer", n));
    const odd = await queue.list({ consumer: "odd-consumer", limit: 10 });
    expect(odd.map((summary) => summary.subject)).toEqual(["gateway.test.1", "gateway.test.3", "gateway.test.5"]);
    expect(odd[0]).toMatchObject({
      streamSeq: originals[1],
      deliveries: 5,
      error: "Error: line one line two",
      eventId: null,
      eventType: null,
    });
    expect((await queue.list({ limit: 2 })).map((summary) => summary.subject)).toEqual(["gateway.test.1", "gateway.test.2"]);

    // Replaying the middle odd letter leaves a gap the next list steps over.
    expect(await queue.replay([odd[1]!.dlqSeq])).toBe(1);
    expect(await queue.replay([odd[1]!.dlqSeq])).toBe(0); // already gone
    expect((await queue.list({ consumer: "odd-consumer", limit: 10 })).map((summary) => summary.subject)).toEqual([
      "gateway.test.1",
      "gateway.test.5",
    ]);
    expect(await queue.get([odd[0]!.dlqSeq, odd[1]!.dlqSeq])).toHaveLength(1);
    expect(await queue.countByConsumer()).toEqual(
      new Map([
        ["odd-consumer", 2],
        ["even-consumer", 2],
      ]),
    );
    const replayed = (await link.jsm.streams.getMessage("GATEWAY", { last_by_subj: "gateway.test.3" }))!;
    expect(replayed.string()).toBe("payload-3");
    expect(replayed.seq).toBeGreaterThan(originals[5]!); // the replay's copy, not the original
    expect(replayed.header.get(DLQ_HEADERS.consumer)).toBe(""); // the DLQ's own headers stay behind

    expect(await replayDeadLetters({ js: link.js, jsm: link.jsm, logger, consumer: "even-consumer" })).toEqual({
      replayed: 2,
      remaining: 0,
    });
    expect(await queue.countByConsumer()).toEqual(new Map([["odd-consumer", 2]]));
  });

  it("replays no letter its stream does not hold as it says: a forged body, a made-up sequence, a subject it was not stored on", async () => {
    const queue = new DeadLetterQueue(link.js, link.jsm, logger);
    for (const letter of await queue.list({ limit: 100 })) await link.jsm.streams.deleteMessage("DLQ", letter.dlqSeq);
    const stored = await link.js.publish("gateway.forge.original", "what was stored");
    // Each its own consumer: a letter's Msg-Id names its stream, sequence and consumer.
    const forged = (subject: string, streamSeq: number, body: string) => ({
      subject,
      stream: "GATEWAY",
      streamSeq,
      consumer: `forged-${body.length}-${subject.length}`,
      deliveries: 5,
      error: "made up",
      data: new TextEncoder().encode(body),
    });
    await publishDeadLetter(link.js, forged("gateway.forge.original", stored.seq, "another body"));
    await publishDeadLetter(link.js, forged("gateway.forge.original", stored.seq + 1_000, "what was stored"));
    await publishDeadLetter(link.js, forged("gateway.forge.elsewhere", stored.seq, "what was stored"));
    const letters = await queue.list({ limit: 10 });
    expect(letters).toHaveLength(3);
    expect(await queue.replay(letters.map((letter) => letter.dlqSeq))).toBe(0);
    expect(await queue.list({ limit: 10 })).toHaveLength(3);
    const info = await link.jsm.streams.info("GATEWAY", { subjects_filter: "gateway.forge.>" });
    expect(info.state.subjects).toEqual({ "gateway.forge.original": 1 });
  });
});
