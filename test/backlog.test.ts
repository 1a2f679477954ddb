/**
 * How far behind a durable is, read from a real nats-server: the wait of its oldest message not
 * yet acknowledged, on its own filter only, delivered or not; and the sum over the durables a
 * caller picks (what the saga's sweeper asks before it sends a step's command again).
 */
import { AckPolicy, type ConsumerInfo } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QueueWaitHistory, connectJetStream, oldestUnacknowledgedWaitMs, queuedWaits, type JetStreamLink } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { startTestNats } from "@vaultpay/testing";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("queued wait of durable consumers", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let link: JetStreamLink;
  const info = (name: string): Promise<ConsumerInfo> => link.jsm.consumers.info("TRANSACTIONS", name);

  beforeAll(async () => {
    nats = await startTestNats();
    link = await connectJetStream(nats.url, "backlog-test", createLogger({ service: "backlog-test", level: "silent" }));
    for (const [name, filter_subject] of [
      ["commands", "transaction.initiated"],
      ["statuses", "transaction.status.changed"],
      ["everything", "transaction.>"],
    ]) {
      await link.jsm.consumers.add("TRANSACTIONS", { durable_name: name, ack_policy: AckPolicy.Explicit, filter_subject });
    }
  });
  afterAll(async () => {
    await link?.nc.drain();
    await nats?.stop();
  });

  it("is 0 for a durable with nothing to do", async () => {
    expect(await oldestUnacknowledgedWaitMs(link.jsm, await info("commands"))).toBe(0);
    expect(await queuedWaits(link.jsm, ["TRANSACTIONS", "FRAUD", "ACCOUNTS"], (consumer) => consumer.name)).toEqual(
      new Map([
        ["commands", 0],
        ["statuses", 0],
        ["everything", 0],
      ]),
    );
  });

  it("counts from the oldest message on the durable's own filter, delivered or not, until it is acknowledged", async () => {
    const first = await link.js.publish("transaction.initiated", "{}");
    await sleep(400);
    await link.js.publish("transaction.status.changed", "{}");
    await sleep(200);
    const second = await link.js.publish("transaction.initiated", "{}");
    const stored = await link.jsm.streams.getMessage("TRANSACTIONS", { seq: first.seq });
    const now = stored!.time.getTime() + 1_000;

    const commands = await oldestUnacknowledgedWaitMs(link.jsm, await info("commands"), now);
    const statuses = await oldestUnacknowledgedWaitMs(link.jsm, await info("statuses"), now);
    const everything = await oldestUnacknowledgedWaitMs(link.jsm, await info("everything"), now);
    expect(commands).toBe(1_000);
    // The status change, stored later: not the older command just past the durable's ack floor.
    expect(statuses).toBeGreaterThanOrEqual(300);
    expect(statuses).toBeLessThanOrEqual(700);
    expect(everything).toBe(1_000);
    // By hop: durables left out are not asked, durables on one hop count as their longest.
    const hopOf = (consumer: ConsumerInfo) => (consumer.name === "everything" ? undefined : consumer.name === "commands" ? "a" : "b");
    expect(await queuedWaits(link.jsm, ["TRANSACTIONS", "ACCOUNTS"], hopOf, now)).toEqual(
      new Map([
        ["a", commands],
        ["b", statuses],
      ]),
    );
    expect(await queuedWaits(link.jsm, ["TRANSACTIONS"], () => "one", now)).toEqual(new Map([["one", 1_000]]));

    // Delivered and not acknowledged: still waiting.
    const consumer = await link.js.consumers.get("TRANSACTIONS", "commands");
    const batch = await consumer.fetch({ max_messages: 1, expires: 2_000 });
    const delivered = [];
    for await (const message of batch) delivered.push(message);
    expect(delivered.map((message) => message.seq)).toEqual([first.seq]);
    expect((await info("commands")).num_ack_pending).toBe(1);
    expect(await oldestUnacknowledgedWaitMs(link.jsm, await info("commands"), now)).toBe(1_000);

    // Acknowledged: the wait is the next command's.
    await delivered[0]!.ackAck();
    const secondStored = await link.jsm.streams.getMessage("TRANSACTIONS", { seq: second.seq });
    expect(await oldestUnacknowledgedWaitMs(link.jsm, await info("commands"), now)).toBe(now - secondStored!.time.getTime());

    // The last one gone from the stream (lost): nothing waits any more.
    await link.jsm.streams.deleteMessage("TRANSACTIONS", second.seq);
    expect(await oldestUnacknowledgedWaitMs(link.jsm, await info("commands"), now)).toBe(0);
  });
});

describe("queue wait history", () => {
  it("adds up, hop by hop, the longest wait sampled since a time, from the sample just before it", () => {
    const history = new QueueWaitHistory(10_000);
    history.record(1_000, new Map([["a", 9_000]]));
    history.record(
      2_000,
      new Map([
        ["a", 4_000],
        ["b", 500],
      ]),
    );
    history.record(
      3_000,
      new Map([
        ["a", 100],
        ["b", 2_000],
      ]),
    );
    history.record(
      4_000,
      new Map([
        ["a", 0],
        ["b", 0],
      ]),
    );
    // A message sent at 2.5 s waited at most 4 s at a (the sample at 2 s is the last before it) and 2 s at b.
    expect(history.longestSince(2_500, ["a", "b"])).toBe(6_000);
    expect(history.longestSince(2_500, ["b"])).toBe(2_000);
    expect(history.longestSince(3_000, ["a", "b"])).toBe(2_100);
    expect(history.longestSince(0, ["a"])).toBe(9_000);
    expect(history.longestSince(5_000, ["a", "b", "c"])).toBe(0);
    // Past the window, the old samples go (the one just before the window's start stays).
    history.record(13_500, new Map([["a", 0]]));
    expect(history.longestSince(0, ["a"])).toBe(100);
    expect(history.lastSampledAt()).toBe(13_500);
    expect(new QueueWaitHistory(1_000).longestSince(0, ["a"])).toBe(0);
    expect(new QueueWaitHistory(1_000).lastSampledAt()).toBeUndefined();
  });
});
