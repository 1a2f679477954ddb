/**
 * The status feed on a real NATS server: the gateway subscribes to the subjects of the transfers
 * followed here, so the server sends it those and no others; what arrives is validated and reaches
 * the transfer's inboxes.
 */
import { randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats, createEvent, eventSubject, statusChangedSubject, type NatsConnection } from "@vaultpay/events";
import { createLogger, createMetrics } from "@vaultpay/kit";
import { startTestNats } from "@vaultpay/testing";
import { StatusInbox, statusFeedFromNats, type StatusEvent, type StatusFeed } from "./status-feed.ts";

describe("statusFeedFromNats", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let nc: NatsConnection;
  let publisher: NatsConnection;
  let feed: StatusFeed;
  const metrics = createMetrics("status-feed-test");
  /** A metric's value as Prometheus would scrape it. */
  const metric = async (name: string) => (await metrics.registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;
  const lines: string[] = [];
  const logger = createLogger({
    service: "status-feed-test",
    destination: new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  });

  beforeAll(async () => {
    nats = await startTestNats();
    nc = await connectNats(nats.url, "status-feed-test", logger);
    publisher = await connectNats(nats.url, "status-feed-test-publisher", logger);
    // One feed, as a gateway holds: its subscription to the bare subject lives as long as it does.
    feed = statusFeedFromNats(nc, logger, metrics);
  });
  afterAll(async () => {
    await publisher?.close();
    await nc?.close();
    await nats?.stop();
  });

  const status = (transferId: string): StatusEvent => ({
    transferId,
    userId: randomUUID(),
    status: "DEBITED",
    previousStatus: null,
    failureReason: null,
    changedAt: new Date().toISOString(),
  });
  const event = (transferId: string) => createEvent("transaction.status.changed", status(transferId), { correlationId: "c-1", actor: {} });
  const unreadable = () => lines.filter((line) => line.includes("unreadable status event")).length;
  /** Messages this connection received so far (every subscription's). */
  const received = () => nc.stats().inMsgs;

  it("receives only the transfers followed here, each on its own subject, from the moment the inbox is ready", async () => {
    const followed = randomUUID();
    const other = randomUUID();
    const inbox = new StatusInbox(feed, followed);
    await inbox.ready;
    expect(await metric("vaultpay_subscriptions_active")).toBe(1);
    const before = received();
    const countedBefore = await metric("vaultpay_status_changes_received_total");
    // Published from another connection, as the outbox relays do, on the subject the outbox writes.
    const publish = (value: { type: "transaction.status.changed"; data: StatusEvent }) =>
      publisher.publish(eventSubject(value), JSON.stringify(value));

    publish(event(other));
    publish({ ...event(other), data: { ...status(other), status: "NOT A STATUS" as StatusEvent["status"] } });
    publish(event(followed));
    expect(await inbox.next(10_000)).toMatchObject({ transferId: followed, status: "DEBITED" });
    await publisher.flush();
    await nc.flush();
    // The server sent the followed transfer's change and none of the other transfer's.
    expect(received() - before).toBe(1);
    expect((await metric("vaultpay_status_changes_received_total")) - countedBefore).toBe(1);

    // A second subscription to the same transfer shares its NATS subscription; the last one to
    // close ends it, and the server stops sending.
    const second = new StatusInbox(feed, followed);
    await second.ready;
    inbox.close();
    publish(event(followed));
    expect(await second.next(10_000)).toMatchObject({ transferId: followed });
    second.close();
    expect(await metric("vaultpay_subscriptions_active")).toBe(0);
    await nc.flush();
    const afterClose = received();
    publish(event(followed));
    await publisher.flush();
    await nc.flush();
    expect(received()).toBe(afterClose);
  });

  it("refuses and logs a malformed change of a followed transfer, and reads the bare subject older outbox rows use", async () => {
    const followed = randomUUID();
    const inbox = new StatusInbox(feed, followed);
    await inbox.ready;
    const before = unreadable();
    publisher.publish(
      statusChangedSubject(followed),
      JSON.stringify({ ...event(followed), data: { ...status(followed), status: "NOT A STATUS" } }),
    );
    publisher.publish(statusChangedSubject(followed), JSON.stringify(event(followed)));
    // One subscription delivers in order: when the valid one is here, the malformed one was handled.
    expect(await inbox.next(10_000)).toMatchObject({ transferId: followed, status: "DEBITED" });
    expect(unreadable()).toBe(before + 1);

    // A row written before status changes had their own subjects: published on the type alone.
    publisher.publish("transaction.status.changed", JSON.stringify(event(randomUUID())));
    publisher.publish("transaction.status.changed", JSON.stringify({ type: "transaction.status.changed", data: {} }));
    publisher.publish("transaction.status.changed", JSON.stringify(event(followed)));
    expect(await inbox.next(10_000)).toMatchObject({ transferId: followed });
    // Of the other transfer's change nothing was validated; the envelope without a transfer id was.
    expect(unreadable()).toBe(before + 2);
    inbox.close();
  });

  it("subscribes to nothing for an id that is no uuid (it names no transfer and must not become a wildcard)", async () => {
    const inbox = new StatusInbox(feed, ">");
    await inbox.ready;
    await nc.flush();
    const before = received();
    publisher.publish(statusChangedSubject(randomUUID()), JSON.stringify(event(randomUUID())));
    await publisher.flush();
    await nc.flush();
    expect(received()).toBe(before);
    expect(await inbox.next(0)).toBeUndefined();
    inbox.close();
  });
});
