/**
 * The status feed on a real NATS server: the events of transfers followed here are validated and
 * reach their inboxes; the others (most of them, on a gateway among several) are passed over
 * without validation.
 */
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectNats, createEvent, type NatsConnection } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { startTestNats } from "@vaultpay/testing";
import { StatusInbox, statusFeedFromNats, type StatusEvent } from "./status-feed.ts";

describe("statusFeedFromNats", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let nc: NatsConnection;
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
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it("validates and delivers the events of a followed transfer, and passes over the others unread", async () => {
    const feed = statusFeedFromNats(nc, logger);
    // The subscription is on the server before anything is published.
    await nc.flush();
    const inbox = new StatusInbox(feed, "t-followed");
    const status = (transferId: string): StatusEvent => ({
      transferId,
      userId: "u1",
      status: "DEBITED",
      previousStatus: null,
      failureReason: null,
      changedAt: new Date().toISOString(),
    });
    const event = (transferId: string) =>
      createEvent("transaction.status.changed", status(transferId), { correlationId: "c-1", actor: {} });
    const publish = (value: unknown) => nc.publish("transaction.status.changed", JSON.stringify(value));
    const unreadable = () => lines.filter((line) => line.includes("unreadable status event")).length;

    // Malformed, for a transfer nobody follows here: not validated, so not even logged.
    publish({ ...event("t-other"), data: { ...status("t-other"), status: "NOT A STATUS" } });
    publish(event("t-other"));
    // Malformed, for the followed transfer: validated, refused and logged; then a valid one.
    publish({ ...event("t-followed"), data: { ...status("t-followed"), status: "NOT A STATUS" } });
    publish(event("t-followed"));
    // One subscription delivers in order: when the valid one is here, the others were handled.
    expect(await inbox.next(10_000)).toMatchObject({ transferId: "t-followed", status: "DEBITED" });
    expect(await inbox.next(0)).toBeUndefined();
    expect(unreadable()).toBe(1);
    // An envelope without a transfer id is validated (and refused) whatever is followed.
    publish({ type: "transaction.status.changed", data: {} });
    publish(event("t-followed"));
    expect(await inbox.next(10_000)).toMatchObject({ transferId: "t-followed" });
    expect(unreadable()).toBe(2);
    inbox.close();
  });
});
