/**
 * PostgreSQL and Redis fail under a transfer load, with the production durability settings (the
 * stack's: synchronous_commit=on, fsync=on). PostgreSQL is stopped fast once and crashed once
 * (SIGKILL to the postmaster and every backend), each time restarted on the same data; the
 * services are never restarted. Requests during an outage get a retryable UNAVAILABLE, never
 * INTERNAL; afterwards every transfer is terminal and applied once, no money moved for a transfer
 * the transactions service lost, and every event in any service's outbox is in the audit chain.
 * Redis is then killed and restarted: refusals meanwhile are UNAVAILABLE and sign-in works again.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintAccessToken, startTestPostgres, startTestStack, waitUntil, type TestPostgres, type TestStack } from "@vaultpay/testing";
import {
  AT_FAULT,
  FAULT_TEST_ENV,
  type InFlight,
  expectBankInvariant,
  expectEveryEventAudited,
  inFlightCount,
  openFundedAccounts,
  sendTransfers,
  whenStarted,
  whenTransfersInFlight,
} from "./support/bank.ts";

const ACCOUNTS = 12;
const TRANSFERS = 160;
const DEPOSITS = Array.from({ length: ACCOUNTS }, () => 1_000_000n);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("PostgreSQL and Redis faults under load", () => {
  let postgres: TestPostgres;
  let stack: TestStack & { teardown: () => Promise<void> };

  beforeAll(async () => {
    postgres = await startTestPostgres();
    stack = await startTestStack({
      databaseServerUrl: postgres.url,
      env: { ...FAULT_TEST_ENV, RATE_LIMIT_CREDENTIAL_ATTEMPTS: "100000" },
    });
  });

  afterAll(async () => {
    await stack?.teardown();
    await postgres?.stop();
  });

  it("loses no money and no event when PostgreSQL stops fast or crashes mid-load", async () => {
    const customers = await openFundedAccounts(stack, DEPOSITS);
    const load = sendTransfers(stack, customers, { count: TRANSFERS, inFlight: 8, paceMs: 250, keyPrefix: "crash" });
    const inFlightAtFault: Record<string, InFlight | null> = {};
    // Each fault once another third of the load has been handed out (by progress, not the clock:
    // see whenStarted), so both meet transfers in flight and clients still sending.
    const faults = (async () => {
      for (const [index, kind] of (["fast", "kill"] as const).entries()) {
        await whenStarted(load, Math.round((TRANSFERS * (index + 1)) / 3));
        inFlightAtFault[kind] = await whenTransfersInFlight(load, stack.databaseUrls.transactions);
        await postgres.fault(kind);
        await sleep(1_500);
        await postgres.restart();
      }
    })();
    await Promise.all([load.done, faults]);
    expect(load.accepted.size).toBe(TRANSFERS);
    for (const [fault, counts] of Object.entries(inFlightAtFault))
      expect(inFlightCount(counts), `transfers in flight at the ${fault} fault`).toBeGreaterThanOrEqual(AT_FAULT.IN_FLIGHT);
    // The outages reached clients, as a retryable code and nothing else.
    const codes = Object.fromEntries(load.errorCodes);
    expect(codes.UNAVAILABLE ?? 0, JSON.stringify(codes)).toBeGreaterThan(0);
    expect(
      Object.keys(codes).filter((code) => code !== "UNAVAILABLE"),
      JSON.stringify(codes),
    ).toEqual([]);

    const outcome = await expectBankInvariant(stack, {
      transfers: TRANSFERS,
      totalDepositedMinor: DEPOSITS.reduce((sum, value) => sum + value, 0n),
    });
    expect(outcome.COMPLETED).toBeGreaterThan(0);

    // Every event any service committed reached the audit chain, and the chain verifies.
    await expectEveryEventAudited(stack);
    const admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
    const verified = await stack.graphql<{ verifyAuditChain: { valid: boolean; checked: number } }>(
      `{ verifyAuditChain { valid checked } }`,
      {},
      { authorization: `Bearer ${admin}` },
    );
    expect(verified.data?.verifyAuditChain.valid).toBe(true);
    console.info(
      `crash: ${JSON.stringify(outcome)}; in flight at each fault ${JSON.stringify(inFlightAtFault)}; refusals ${JSON.stringify(codes)}`,
    );
  }, 420_000);

  it("answers UNAVAILABLE while Redis is away, and signs customers in again once it is back", async () => {
    const email = `redis-${randomUUID().slice(0, 8)}@example.com`;
    const device = "redis-test-phone";
    const register = () =>
      stack.graphql<{ register: { challengeId: string } }>(
        `mutation($email: String!) { register(email: $email, phone: "+919800000077", password: "Monsoon-harbour-ledger-42", deviceId: "${device}") { challengeId } }`,
        { email },
        { "x-device-id": device },
      );
    await stack.redis.process.kill();
    // Whatever needs Redis (the OTP challenge, the rate limits, revoked sessions) refuses clearly.
    const during = await register();
    expect(during.errors?.map((error) => error.extensions?.code)).toEqual(["UNAVAILABLE"]);
    expect(during.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThan(0);

    await stack.redis.restart();
    const challengeId = await waitUntil(
      async () => (await register()).data?.register.challengeId,
      "registration to work again",
      15_000,
      250,
    );
    const mailbox = await stack.graphql<{ devMailbox: Array<{ code: string | null }> }>(
      `query($to: String!) { devMailbox(to: $to) { code } }`,
      { to: email },
    );
    const code = mailbox.data!.devMailbox[0]!.code!;
    const verified = await stack.graphql<{ verifyOtp: { accessToken: string } }>(
      `mutation($challengeId: ID!, $code: String!) { verifyOtp(challengeId: $challengeId, code: $code, deviceId: "${device}") { accessToken } }`,
      { challengeId, code },
      { "x-device-id": device },
    );
    expect(verified.errors).toBeUndefined();
    // Each process's Redis client reconnects on its own back-off, so a later request may still
    // meet one that has not: it is refused as UNAVAILABLE, never anything else, and soon answered.
    const refusals = new Set<unknown>();
    const me = await waitUntil(
      async () => {
        const answer = await stack.graphql<{ me: { email: string } }>(
          `{ me { email } }`,
          {},
          { authorization: `Bearer ${verified.data!.verifyOtp.accessToken}`, "x-device-id": device },
        );
        for (const error of answer.errors ?? []) refusals.add(error.extensions?.code);
        return answer.data?.me;
      },
      "the signed-in customer's own profile",
      15_000,
      250,
    );
    expect(me.email).toBe(email);
    expect([...refusals].filter((code) => code !== "UNAVAILABLE")).toEqual([]);
  }, 120_000);
});
