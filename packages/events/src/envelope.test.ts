import { describe, expect, it } from "vitest";
import { runWithContext } from "@vaultpay/kit";
import { InvalidEventError, createEvent, eventId, parseEvent, type Event } from "./envelope.ts";
import { eventHeaders } from "./outbox.ts";
import { eventSubject, statusChangedSubject, streamForSubject } from "./streams.ts";

const accountCreated = {
  accountId: "acc-1",
  userId: "user-1",
  type: "SAVINGS",
  currency: "INR",
  maskedNumber: "XXXX4321",
  numberBlindIndex: "bi-4321",
} as const;

describe("event envelope", () => {
  it("takes correlation, causation and actor from the current context", () => {
    const event = runWithContext({ correlationId: "corr-9", causationId: "cause-1", actor: { userId: "u1", deviceId: undefined } }, () =>
      createEvent("account.created", accountCreated),
    );
    expect(event).toMatchObject({
      type: "account.created",
      version: 1,
      correlationId: "corr-9",
      causationId: "cause-1",
      actor: { userId: "u1" },
    });
    expect(event.actor).not.toHaveProperty("deviceId");
    expect(event.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/); // uuid v7: time-ordered
    expect(parseEvent(JSON.parse(JSON.stringify(event)))).toEqual(event);
  });

  it("uses the event id as correlation id outside any request", () => {
    const event = createEvent("account.created", accountCreated, undefined);
    expect(event.correlationId).toBe(event.id);
    expect(event.causationId).toBeNull();
  });

  it("refuses data that does not match the type's schema, on both sides", () => {
    expect(() => createEvent("account.created", { ...accountCreated, currency: "RUPEES" })).toThrow(InvalidEventError);
    const event = createEvent("account.created", accountCreated);
    expect(() => parseEvent({ ...event, data: { ...event.data, type: "GOLD" } })).toThrow(/account.created/);
    expect(() => parseEvent({ ...event, type: "account.teleported" })).toThrow(/unknown event type/);
    expect(() => parseEvent({ ...event, version: 2 })).toThrow(/unsupported version/);
    expect(() => parseEvent({ ...event, id: "not-a-uuid" })).toThrow(/bad envelope/);
  });

  it("carries no trace context while tracing is off, and drops a malformed one instead of refusing the event", () => {
    const event = createEvent("account.created", accountCreated);
    expect(event).not.toHaveProperty("traceparent");
    expect(eventHeaders(event).has("traceparent")).toBe(false);
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    expect(parseEvent({ ...event, traceparent }).traceparent).toBe(traceparent);
    expect(eventHeaders({ ...event, traceparent }).get("traceparent")).toBe(traceparent);
    const malformed = parseEvent({ ...event, traceparent: "01-not-a-trace" });
    expect(malformed.traceparent).toBeUndefined();
    expect(malformed.id).toBe(event.id);
  });

  it("routes subjects to their streams", () => {
    expect(streamForSubject("account.debited")).toBe("ACCOUNTS");
    expect(streamForSubject("transaction.status.changed")).toBe("TRANSACTIONS");
    const transferId = "0193a1b2-0000-7000-8000-000000000001";
    expect(streamForSubject(statusChangedSubject(transferId))).toBe("TRANSACTIONS");
    expect(eventSubject({ type: "transaction.status.changed", data: { transferId } } as Event)).toBe(
      `transaction.status.changed.${transferId}`,
    );
    expect(eventSubject({ type: "transaction.completed", data: { transferId } } as Event)).toBe("transaction.completed");
    expect(streamForSubject("dlq.ACCOUNTS.x")).toBe("DLQ");
    expect(() => streamForSubject("payroll.run")).toThrow();
  });
});

describe("eventId", () => {
  it("makes uuid v7 ids that are unique, carry the time, and sort in the order they were made", () => {
    const before = Date.now();
    const ids = Array.from({ length: 20_000 }, () => eventId());
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of ids.slice(0, 50)) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const msecs = Number.parseInt(ids[0]!.replaceAll("-", "").slice(0, 12), 16);
    expect(msecs).toBeGreaterThanOrEqual(before);
    expect(msecs).toBeLessThanOrEqual(Date.now());
  });
});
