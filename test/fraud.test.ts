/**
 * The fraud engine over real JetStream and PostgreSQL: devices from AUTH, check requests from
 * FRAUD, verdicts back on FRAUD through the outbox. The service's own consumers run in-process.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import {
  createEvent,
  eventHeaders,
  startEventing,
  type Event,
  type EventData,
  type JetStreamLink,
  connectJetStream,
  DLQ_HEADERS,
} from "@vaultpay/events";
import { Lifecycle, createLogger } from "@vaultpay/kit";
import { createTestDatabase, mintAccessToken, startTestNats, startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";
import { SqlPool } from "../packages/service/src/index.ts";
import { createDb, type Db } from "../subgraphs/fraud/src/db.ts";
import { startConsumers } from "../subgraphs/fraud/src/events.ts";
import { rulesConfigFromEnv } from "../subgraphs/fraud/src/testing.ts";

const logger = createLogger({ service: "fraud-test", level: "silent" });
type Verdict = EventData<"fraud.check.completed">;
type Request = EventData<"fraud.check.requested">;

/** The service's defaults: no FRAUD_* variable set. */
const rules = rulesConfigFromEnv();

/** A check request as transactions sends it; a fresh transfer unless overridden. */
function request(overrides: Partial<Request> = {}): Event<"fraud.check.requested"> {
  return createEvent(
    "fraud.check.requested",
    {
      transferId: randomUUID(),
      userId: "user-1",
      fromAccountId: "acc-1",
      toAccountId: "acc-payee",
      amountMinor: "100000",
      currency: "INR",
      requestDeviceId: "phone-1",
      deviceProven: true,
      sessionDeviceId: "phone-1",
      initiatedAt: new Date().toISOString(),
      ...overrides,
    },
    { correlationId: randomUUID(), actor: {} },
  );
}

async function publishTo(link: JetStreamLink, event: Event): Promise<void> {
  await link.js.publish(event.type, JSON.stringify(event), { msgID: event.id, headers: eventHeaders(event) });
}

describe("fraud checks over JetStream", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  let lifecycle: Lifecycle;
  let link: JetStreamLink;
  const verdicts = new Map<string, Verdict[]>();

  beforeAll(async () => {
    [nats, database] = await Promise.all([startTestNats(), createTestDatabase("fraud")]);
    db = createDb(database.url);
    lifecycle = new Lifecycle(logger);
    link = await connectJetStream(nats.url, "fraud-test-client", logger);
    // What transactions will read: every fraud.check.completed the relay publishes.
    const subscription = link.nc.subscribe("fraud.check.completed");
    void (async () => {
      for await (const message of subscription) {
        const event = message.json<Event<"fraud.check.completed">>();
        verdicts.set(event.data.transferId, [...(verdicts.get(event.data.transferId) ?? []), event.data]);
      }
    })();
    // As in the service: consumers and relay on node-postgres (SqlPool).
    const pool = new SqlPool(database.url);
    lifecycle.onShutdown("raw SQL pool", () => pool.$disconnect());
    const eventing = await startEventing({ natsUrl: nats.url, name: "fraud", logger, lifecycle, db: pool });
    await startConsumers(eventing, { rules, logger, now: () => new Date() });
  });

  afterAll(async () => {
    await lifecycle?.shutdown();
    await link?.nc.close();
    await db?.$disconnect();
    await Promise.all([nats?.stop(), database?.drop()]);
  });

  const publish = (event: Event) => publishTo(link, event);

  function verdictOf(transferId: string, count = 1): Promise<Verdict[]> {
    return waitUntil(async () => {
      const received = verdicts.get(transferId) ?? [];
      return received.length >= count && received;
    }, `${count} verdict(s) for ${transferId}`);
  }

  async function registerDevice(userId: string, deviceId: string): Promise<void> {
    await publish(
      createEvent("auth.device.registered", { userId, deviceRecordId: randomUUID(), deviceId }, { correlationId: randomUUID(), actor: {} }),
    );
    // Devices and checks travel on different streams: wait until fraud knows the device.
    await waitUntil(() => db.knownDevice.findUnique({ where: { userId_deviceId: { userId, deviceId } } }), `device ${deviceId} known`);
  }

  it("refuses a burst of transfers from a device the user never registered", async () => {
    await registerDevice("user-burst", "phone-A");
    const burst = Array.from({ length: 6 }, () =>
      request({ userId: "user-burst", fromAccountId: "acc-burst", requestDeviceId: "laptop-B", sessionDeviceId: "laptop-B" }),
    );
    for (const event of burst) await publish(event);
    const results = await Promise.all(burst.map(async (event) => (await verdictOf(event.data.transferId))[0]!));

    const unknownDevice = "The transfer came from a device not registered for this user";
    expect(results[0]).toMatchObject({
      passed: true,
      riskScore: 45,
      reasons: [unknownDevice, "First transfer from this user to the destination account"],
    });
    for (const result of results.slice(1, 5)) expect(result).toMatchObject({ passed: true, riskScore: 30, reasons: [unknownDevice] });
    expect(results[5]).toMatchObject({
      passed: false,
      riskScore: 65,
      reasons: ["Velocity within 600 s: 6 transfers by this user (max 5); 6 transfers by this account (max 5)", unknownDevice],
    });

    // Each check is stored with the facts and every rule's result behind it.
    const stored = await db.fraudCheck.findUniqueOrThrow({ where: { transferId: burst[5]!.data.transferId } });
    expect(stored).toMatchObject({ passed: false, riskScore: 65, requestDeviceId: "laptop-B", amountMinor: 100000n });
    expect(stored.evaluation).toMatchObject({ failScore: 60, failedClosed: null, facts: { windowTransfersByUser: 5, knownDevices: 1 } });
  });

  it("refuses at once a request from another device than the session's", async () => {
    await registerDevice("user-stolen", "phone-A");
    const event = request({ userId: "user-stolen", fromAccountId: "acc-stolen", requestDeviceId: "laptop-X", sessionDeviceId: "phone-A" });
    await publish(event);
    const [verdict] = await verdictOf(event.data.transferId);
    expect(verdict).toMatchObject({ passed: false, riskScore: 85 });
    expect(verdict!.reasons).toEqual([
      "The transfer came from a device not registered for this user",
      "The transfer request came from a different device than the signed-in session",
      "First transfer from this user to the destination account",
    ]);
  });

  it("answers a repeated request for a transfer with the stored verdict, and stores one check", async () => {
    await registerDevice("user-dup", "phone-D");
    const first = request({
      userId: "user-dup",
      fromAccountId: "acc-dup",
      requestDeviceId: "phone-D",
      sessionDeviceId: "phone-D",
      amountMinor: "5000",
    });
    await publish(first);
    const [original] = await verdictOf(first.data.transferId);
    expect(original).toMatchObject({ passed: true, riskScore: 15 });

    // Re-published with a new event id and a body that would score far worse: the answer does not change.
    const again = request({ ...first.data, amountMinor: "99999999", requestDeviceId: "laptop-Z" });
    await publish(again);
    const both = await verdictOf(first.data.transferId, 2);
    expect(both[1]).toEqual(original);

    // A redelivery of an already processed event (same id, past JetStream's duplicate window) is a no-op.
    await link.js.publish(first.type, JSON.stringify(first), { msgID: randomUUID(), headers: eventHeaders(first) });
    const marker = request({ userId: "user-dup-marker" });
    await publish(marker);
    await verdictOf(marker.data.transferId);
    expect(verdicts.get(first.data.transferId)).toHaveLength(2);
    expect(await db.fraudCheck.count({ where: { transferId: first.data.transferId } })).toBe(1);
  });

  it("fails closed on a request it cannot score, and never passes a malformed one", async () => {
    const foreign = request({ userId: "user-fc", currency: "USD" });
    await publish(foreign);
    const [verdict] = await verdictOf(foreign.data.transferId);
    expect(verdict).toMatchObject({
      passed: false,
      riskScore: 100,
      reasons: ["Fraud check could not be computed: amount limits are not configured for currency USD"],
    });
    const sameAccount = request({ userId: "user-fc", toAccountId: "acc-1" });
    await publish(sameAccount);
    expect((await verdictOf(sameAccount.data.transferId))[0]).toMatchObject({
      passed: false,
      reasons: ["Fraud check could not be computed: the source and destination accounts are the same"],
    });

    // Missing the session device: the event schema refuses it before any rule runs, so it goes
    // to DLQ with no verdict at all (transactions' deadline compensates), never a pass.
    const valid = request({ userId: "user-fc" });
    const { sessionDeviceId: _dropped, ...insufficient } = valid.data;
    const dlqBefore = (await link.jsm.streams.info("DLQ")).state.last_seq;
    await publish({ ...valid, data: insufficient } as unknown as Event);
    const dlq = await waitUntil(async () => {
      const info = await link.jsm.streams.info("DLQ");
      return info.state.last_seq > dlqBefore && info;
    }, "the malformed request in DLQ");
    const letter = (await link.jsm.streams.getMessage("DLQ", { seq: dlq.state.last_seq }))!;
    expect(letter.subject).toBe("dlq.FRAUD.fraud-checks");
    expect(letter.header.get(DLQ_HEADERS.error)).toMatch(/InvalidEventError: fraud.check.requested/);
    const marker = request({ userId: "user-fc-marker" });
    await publish(marker);
    await verdictOf(marker.data.transferId);
    expect(verdicts.get(valid.data.transferId)).toBeUndefined();
    expect(await db.fraudCheck.count({ where: { transferId: valid.data.transferId } })).toBe(0);
  });
});

describe("fraudChecks through the gateway", () => {
  let stack: TestStack & { teardown: () => Promise<void> };
  let link: JetStreamLink;

  beforeAll(async () => {
    stack = await startTestStack();
    link = await connectJetStream(stack.nats.url, "fraud-stack-test", logger);
  });
  afterAll(async () => {
    await link?.nc.close();
    await stack?.teardown();
  });

  const query = `query Checks($onlyFailed: Boolean, $first: Int) { fraudChecks(onlyFailed: $onlyFailed, first: $first) { transferId riskScore passed reasons checkedAt } }`;
  type Checks = { fraudChecks: Array<{ transferId: string; riskScore: number; passed: boolean; reasons: string[]; checkedAt: string }> };

  it("lists checks, newest first, to an ADMIN only", async () => {
    const admin = {
      authorization: `Bearer ${await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" })}`,
    };
    const customer = {
      authorization: `Bearer ${await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER" })}`,
    };
    const fresh = () => ({
      userId: randomUUID(),
      fromAccountId: randomUUID(),
      toAccountId: randomUUID(),
      amountMinor: "1000",
      requestDeviceId: "device-1",
      sessionDeviceId: "device-1",
    });
    const passing = request(fresh());
    const failing = request({ ...fresh(), requestDeviceId: "device-2" });
    const listed = (count: number) =>
      waitUntil(async () => {
        const result = await stack.graphql<Checks>(query, {}, admin);
        return (result.data?.fraudChecks.length ?? 0) >= count && result;
      }, `${count} check(s) listed`);
    // One after the other, so "newest first" has an order to show.
    await publishTo(link, passing);
    await listed(1);
    await publishTo(link, failing);
    const all = await listed(2);
    expect(all.errors).toBeUndefined();
    expect(all.data!.fraudChecks.map((check) => check.transferId)).toEqual([failing.data.transferId, passing.data.transferId]);
    expect(all.data!.fraudChecks[1]).toMatchObject({ passed: true, riskScore: 45 });

    const failed = await stack.graphql<Checks>(query, { onlyFailed: true }, admin);
    expect(failed.data!.fraudChecks).toEqual([
      expect.objectContaining({ transferId: failing.data.transferId, passed: false, riskScore: 85 }),
    ]);
    expect((await stack.graphql<Checks>(query, { first: 1 }, admin)).data!.fraudChecks).toHaveLength(1);
    expect((await stack.graphql(query, { first: 201 }, admin)).errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");

    expect((await stack.graphql(query, {}, customer)).errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    expect((await stack.graphql(query, {})).errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
  });
});
