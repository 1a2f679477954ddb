/**
 * One transfer is one trace: the whole stack exports OpenTelemetry spans to an OTLP/HTTP receiver
 * of this test, and the spans of the gateway, the transactions subgraph, the outbox relays and every
 * consumer on the saga's path (accounts, fraud, transactions, audit) share one trace id and form one
 * tree — the trace context survives the outbox and rides JetStream's headers.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  startTestOtlpReceiver,
  startTestStack,
  waitUntil,
  type ReceivedSpan,
  type TestOtlpReceiver,
  type TestStack,
} from "@vaultpay/testing";
import { openFundedAccounts } from "./support/bank.ts";

/** SpanKind in OTLP: 2 server, 4 producer, 5 consumer. */
const SERVER = 2;
const PRODUCER = 4;
const CONSUMER = 5;

/** What a complete trace of a completed transfer must hold, at least: the saga's every hop. */
const EXPECTED_CONSUMER_SPANS = [
  ["accounts", "accounts-saga transaction.initiated"],
  ["transactions", "transactions-accounts account.debited"],
  ["fraud", "fraud-checks fraud.check.requested"],
  ["accounts", "accounts-verdicts fraud.check.completed"],
  ["transactions", "transactions-accounts account.credited"],
  ["audit", "audit-transactions transaction.completed"],
  ["auth", "auth-notices-completed transaction.completed"],
] as const;

/** Problems that keep `spans` from being one tree; empty when it is one. */
function treeProblems(spans: readonly ReceivedSpan[]): string[] {
  const ids = new Set(spans.map((span) => span.spanId));
  const roots = spans.filter((span) => span.parentSpanId === "");
  const orphans = spans.filter((span) => span.parentSpanId !== "" && !ids.has(span.parentSpanId));
  return [
    ...(roots.length === 1 ? [] : [`${roots.length} roots: ${roots.map((span) => `${span.service}/${span.name}`).join(", ")}`]),
    ...orphans.map((span) => `${span.service}/${span.name} has a parent that is not in the trace`),
  ];
}

function missingSpans(spans: readonly ReceivedSpan[]): string[] {
  return EXPECTED_CONSUMER_SPANS.filter(
    ([service, name]) => !spans.some((span) => span.service === service && span.name === name && span.kind === CONSUMER),
  ).map(([service, name]) => `${service}/${name}`);
}

describe("tracing", () => {
  let receiver: TestOtlpReceiver;
  let stack: TestStack & { teardown: () => Promise<void> };

  beforeAll(async () => {
    receiver = await startTestOtlpReceiver();
    stack = await startTestStack({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: "100" } });
  });
  afterAll(async () => {
    await stack?.teardown();
    await receiver?.stop();
  });

  it("follows one transfer as one trace from the gateway through the outbox, JetStream and every consumer", async () => {
    const [from, to] = await openFundedAccounts(stack, [100_000n, 100_000n]);
    const correlationId = `trace-${randomUUID()}`;
    const initiated = await stack.graphql<{ initiateTransfer: { id: string } }>(
      `mutation($from: ID!, $to: String!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: "2500", idempotencyKey: $key) { id } }`,
      { from: from!.accountId, to: to!.number, key: randomUUID() },
      { authorization: `Bearer ${from!.token}`, "x-correlation-id": correlationId },
    );
    expect(initiated.errors).toBeUndefined();
    const transferId = initiated.data!.initiateTransfer.id;
    await waitUntil(async () => {
      const read = await stack.graphql<{ transfer: { status: string } }>(
        `query($id: ID!) { transfer(id: $id) { status } }`,
        { id: transferId },
        { authorization: `Bearer ${from!.token}` },
      );
      return read.data?.transfer.status === "COMPLETED";
    }, "the transfer to complete");

    // The gateway's span for this request names the trace; everything else must have joined it.
    const root = await waitUntil(
      async () =>
        receiver.spans.find(
          (span) => span.service === "gateway" && span.kind === SERVER && span.attributes["vaultpay.correlation_id"] === correlationId,
        ),
      "the gateway's span of the transfer request",
    );
    const traceOf = () => receiver.spans.filter((span) => span.traceId === root.traceId);
    // Spans arrive in batches from eight processes: wait until the trace is complete, then judge it.
    await waitUntil(
      async () => missingSpans(traceOf()).length === 0 && treeProblems(traceOf()).length === 0,
      "the transfer's whole trace",
      30_000,
    ).catch(() => undefined);
    const spans = traceOf();
    expect(missingSpans(spans)).toEqual([]);
    expect(treeProblems(spans)).toEqual([]);
    expect(spans.filter((span) => span.parentSpanId === "")).toEqual([root]);

    expect([...new Set(spans.map((span) => span.service))]).toEqual(
      expect.arrayContaining(["gateway", "transactions", "accounts", "fraud", "audit", "auth"]),
    );
    // The gateway's fetch reached the transactions subgraph as a child span of the gateway's trace.
    const subgraph = spans.find((span) => span.service === "transactions" && span.kind === SERVER);
    expect(subgraph?.name).toBe("transactions graphql");
    expect(spans.find((span) => span.spanId === subgraph!.parentSpanId)).toMatchObject({ service: "gateway", name: "gateway.fetch" });
    // Every consumer span is a child of a relay's publish span (the outbox), in the process that
    // wrote the event, or of the gateway's (its request log has no outbox).
    const byId = new Map(spans.map((span) => [span.spanId, span]));
    for (const consumer of spans.filter((span) => span.kind === CONSUMER)) {
      const parent = byId.get(consumer.parentSpanId)!;
      expect(
        parent.kind === PRODUCER || parent.service === "gateway",
        `${consumer.service}/${consumer.name} under ${parent.service}/${parent.name}`,
      ).toBe(true);
      expect(consumer.attributes["vaultpay.correlation_id"]).toBe(correlationId);
    }
    // The saga's steps in order of causation: each consumer's span descends from the previous one.
    const ancestorsOf = (span: ReceivedSpan): ReceivedSpan[] => {
      const chain: ReceivedSpan[] = [];
      for (let parent = byId.get(span.parentSpanId); parent; parent = byId.get(parent.parentSpanId)) chain.push(parent);
      return chain;
    };
    const step = (service: string, name: string) => spans.find((span) => span.service === service && span.name === name)!;
    const credited = step("transactions", "transactions-accounts account.credited");
    const chain = ancestorsOf(credited).map((span) => `${span.service}/${span.name}`);
    for (const [service, name] of EXPECTED_CONSUMER_SPANS.slice(0, 4)) expect(chain).toContain(`${service}/${name}`);
    expect(chain.at(-1)).toBe(`gateway/${root.name}`);
  });
});
