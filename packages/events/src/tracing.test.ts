import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestOtlpReceiver, waitUntil, type TestOtlpReceiver } from "@vaultpay/testing";
import { SpanKind, TRACEPARENT_PATTERN, startTracing, traceparentOf, withSpan } from "@vaultpay/telemetry";
import { createEvent, parseEvent } from "./envelope.ts";
import { eventHeaders } from "./outbox.ts";

const accountCreated = {
  accountId: "acc-1",
  userId: "user-1",
  type: "SAVINGS",
  currency: "INR",
  maskedNumber: "XXXX4321",
  numberBlindIndex: "bi-4321",
} as const;

describe("trace context of events (tracing on)", () => {
  let receiver: TestOtlpReceiver;
  let tracing: { shutdown: () => Promise<void> };

  beforeAll(async () => {
    receiver = await startTestOtlpReceiver();
    tracing = startTracing({ serviceName: "events-test", tracesUrl: `${receiver.endpoint}/v1/traces`, scheduleDelayMs: 10 });
  });
  afterAll(async () => {
    await tracing?.shutdown();
    await receiver?.stop();
  });

  it("stores the emitting span's context in the event, and a consumer's span continues that trace", async () => {
    const { event, emitter } = await withSpan("emit", { parent: null }, async () => ({
      event: createEvent("account.created", accountCreated),
      emitter: traceparentOf()!,
    }));
    expect(emitter).toMatch(TRACEPARENT_PATTERN);
    expect(event.traceparent).toBe(emitter);
    const received = parseEvent(JSON.parse(JSON.stringify(event)));
    expect(eventHeaders(received).get("traceparent")).toBe(emitter);
    const handled = await withSpan("consume", { kind: SpanKind.CONSUMER, parent: received.traceparent }, async () => traceparentOf()!);
    const [, traceId, emitterSpanId] = emitter.split("-");
    expect(handled.split("-")[1]).toBe(traceId);
    const consumer = await waitUntil(async () => receiver.spans.find((span) => span.name === "consume"), "the consumer's span exported");
    expect(consumer).toMatchObject({ service: "events-test", traceId, parentSpanId: emitterSpanId, kind: 5 });
    expect(receiver.spans.find((span) => span.name === "emit")).toMatchObject({ traceId, parentSpanId: "" });
  });

  it("starts a new trace from a missing or malformed parent", async () => {
    const fresh = await withSpan("orphan", { parent: "garbage" }, async () => traceparentOf()!);
    expect(fresh).toMatch(TRACEPARENT_PATTERN);
    const exported = await waitUntil(async () => receiver.spans.find((span) => span.name === "orphan"), "the orphan span exported");
    expect(exported.parentSpanId).toBe("");
  });
});
