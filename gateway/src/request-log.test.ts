/**
 * The gateway's request events on a real NATS server: reads share gateway.request.batch messages
 * (at most GATEWAY_REQUEST_BATCH_MAX, sent within the linger), mutations go at once on their own,
 * and closing sends what waits.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  GATEWAY_REQUEST_BATCH_MAX,
  connectJetStream,
  createEvent,
  parseEvent,
  unbatch,
  type Event,
  type JetStreamLink,
} from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { startTestNats } from "@vaultpay/testing";
import { REQUEST_BATCH_MAX_BYTES, RequestEventPublisher } from "./request-log.ts";

const logger = createLogger({ service: "request-log-test", level: "silent" });

describe("RequestEventPublisher", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let link: JetStreamLink;

  beforeAll(async () => {
    nats = await startTestNats();
    link = await connectJetStream(nats.url, "request-log-test", logger);
  });
  afterAll(async () => {
    await link?.nc.close();
    await nats?.stop();
  });

  const request = (correlationId: string, operationType: "query" | "mutation") =>
    createEvent(
      "gateway.request",
      { operationName: "Op", operationType, outcome: "success", errorCodes: [], durationMs: 3 },
      { correlationId, actor: { userId: "u-1" } },
    );

  /** The GATEWAY stream's messages from `fromSeq` on, parsed (each validated as the consumers do). */
  async function messagesFrom(fromSeq: number): Promise<Event[]> {
    const info = await link.jsm.streams.info("GATEWAY");
    const events: Event[] = [];
    for (let seq = fromSeq; seq <= info.state.last_seq; seq++)
      events.push(parseEvent((await link.jsm.streams.getMessage("GATEWAY", { seq }))!.json()));
    return events;
  }
  const nextSeq = async () => (await link.jsm.streams.info("GATEWAY")).state.last_seq + 1;
  async function until<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const value = await read();
      if (done(value) || Date.now() > deadline) return value;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it("sends the reads of one linger in one batch message, each request whole inside it, and a mutation at once alone", async () => {
    const from = await nextSeq();
    const publisher = new RequestEventPublisher(link.js, logger, 300);
    const reads = [request("c-read-1", "query"), request("c-read-2", "query"), request("c-read-3", "query")];
    const mutation = request("c-write-1", "mutation");
    for (const read of reads) publisher.publish(read);
    publisher.publish(mutation);
    // The mutation is in the stream before the reads' linger is over.
    const first = await until(
      () => messagesFrom(from),
      (events) => events.length >= 1,
    );
    expect(first).toEqual([mutation]);
    const all = await until(
      () => messagesFrom(from),
      (events) => events.length >= 2,
    );
    expect(all).toHaveLength(2);
    const batch = all[1]!;
    expect(batch.type).toBe("gateway.request.batch");
    expect(batch.actor).toEqual({});
    expect(unbatch(batch)).toEqual(reads);
    await publisher.close();
  });

  it("sends a full batch without waiting for the linger, and on close whatever waits; after close, reads go alone", async () => {
    const from = await nextSeq();
    const publisher = new RequestEventPublisher(link.js, logger, 60_000);
    const reads = Array.from({ length: GATEWAY_REQUEST_BATCH_MAX + 2 }, (_, i) => request(`c-full-${i}`, "query"));
    for (const read of reads) publisher.publish(read);
    const full = await until(
      () => messagesFrom(from),
      (events) => events.length >= 1,
    );
    expect(full).toHaveLength(1);
    expect(unbatch(full[0]!)).toEqual(reads.slice(0, GATEWAY_REQUEST_BATCH_MAX));
    await publisher.close();
    const late = request("c-after-close", "query");
    publisher.publish(late);
    const rest = await until(
      () => messagesFrom(from),
      (events) => events.length >= 3,
    );
    expect(rest.slice(1).flatMap(unbatch)).toEqual([...reads.slice(GATEWAY_REQUEST_BATCH_MAX), late]);
    expect(rest[2]).toEqual(late);
  });

  it("cuts batches by size too: requests with long escaped error codes go out in several messages under the streams' limit", async () => {
    const from = await nextSeq();
    const publisher = new RequestEventPublisher(link.js, logger, 60_000);
    // 50 codes of 64 control characters: each escaped to six bytes, ~20 KB of JSON per request.
    const heavy = (i: number) =>
      createEvent(
        "gateway.request",
        {
          operationName: "Op",
          operationType: "query",
          outcome: "error",
          errorCodes: Array.from({ length: 50 }, (_, k) => `${k}`.padEnd(64, "\u0001")),
          durationMs: 1,
        },
        { correlationId: `c-heavy-${i}`, actor: {} },
      );
    const reads = Array.from({ length: 60 }, (_, i) => heavy(i));
    for (const read of reads) publisher.publish(read);
    await publisher.close();
    const messages = await messagesFrom(from);
    expect(messages.length).toBeGreaterThanOrEqual(3);
    for (let seq = from; seq < from + messages.length; seq++)
      expect((await link.jsm.streams.getMessage("GATEWAY", { seq }))!.data.length).toBeLessThanOrEqual(REQUEST_BATCH_MAX_BYTES + 4096);
    expect(messages.flatMap(unbatch)).toEqual(reads);
  });

  it("refuses a batch whose request is not a well-formed gateway.request (the whole message goes to DLQ, not half of it)", () => {
    const batch = createEvent("gateway.request.batch", { requests: [request("c-ok", "query")] });
    const wrongType = { ...batch, data: { requests: [{ ...request("c-bad", "query"), type: "account.debited" }] } };
    expect(() => parseEvent(JSON.parse(JSON.stringify(wrongType)))).toThrow(/gateway.request.batch/);
    const badData = { ...batch, data: { requests: [{ ...request("c-bad", "query"), data: { outcome: "maybe" } }] } };
    expect(() => parseEvent(JSON.parse(JSON.stringify(badData)))).toThrow(/gateway.request.batch/);
    expect(() => parseEvent({ ...batch, data: { requests: [] } })).toThrow(/gateway.request.batch/);
    expect(unbatch(parseEvent(JSON.parse(JSON.stringify(batch))))).toHaveLength(1);
  });
});
