/**
 * The fraud engine inside the money path, with its default rules: a burst of transfers from a
 * device that proves nothing (a bearer token, whatever x-device-id says) fails the saga once
 * velocity adds up, with both reasons, and the failed transfer's money goes back.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintAccessToken, startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";

describe("fraud check in the saga (default rules)", () => {
  let stack: TestStack & { teardown: () => Promise<void> };

  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  it("fails the sixth quick transfer from an unproven device and refunds it", async () => {
    const device = "new-phone";
    const alice = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER", deviceId: device });
    const bob = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER" });
    const admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
    const as = (token: string) => ({ authorization: `Bearer ${token}`, "x-device-id": device });
    const open = async (token: string) =>
      (
        await stack.graphql<{ openAccount: { id: string; number: string } }>(
          `mutation { openAccount(type: CURRENT) { id number } }`,
          {},
          as(token),
        )
      ).data!.openAccount;
    const [from, to] = [await open(alice), await open(bob)];
    await stack.graphql(
      `mutation($id: ID!) { depositFunds(accountId: $id, amountMinor: "100000", idempotencyKey: "fraud-burst-deposit") { id } }`,
      { id: from.id },
      as(admin),
    );

    const outcomes: Array<{ status: string; failureReason: string | null; fraudCheck: { passed: boolean; riskScore: number } | null }> = [];
    for (let i = 0; i < 6; i++) {
      const id = await waitUntil(async () => {
        const result = await stack.graphql<{ initiateTransfer: { id: string } }>(
          `mutation($from: ID!, $to: String!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: "1000", idempotencyKey: $key) { id } }`,
          { from: from.id, to: to.number, key: `burst-${i}` },
          as(alice),
        );
        return result.data?.initiateTransfer.id;
      }, "the transfer to be accepted");
      outcomes.push(
        await waitUntil(async () => {
          const result = await stack.graphql<{
            transfer: { status: string; failureReason: string | null; fraudCheck: { passed: boolean; riskScore: number } | null };
          }>(`query($id: ID!) { transfer(id: $id) { status failureReason fraudCheck { passed riskScore } } }`, { id }, as(alice));
          const transfer = result.data?.transfer;
          return transfer && ["COMPLETED", "FAILED", "REJECTED"].includes(transfer.status) && transfer;
        }, `transfer ${i} to end`),
      );
    }
    // Unproven device (25) + new payee (15) on the first, unproven device alone next: under 60. The
    // sixth in ten minutes adds velocity (35): 60 fails. The claimed x-device-id is never looked up.
    expect(outcomes.slice(0, 5).map((o) => o.status)).toEqual(["COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED"]);
    expect(outcomes[5]!.status).toBe("FAILED");
    // Transfer.fraudCheck comes from the fraud subgraph through federation.
    expect(outcomes.map((o) => o.fraudCheck)).toEqual([
      { passed: true, riskScore: 40 },
      ...Array.from({ length: 4 }, () => ({ passed: true, riskScore: 25 })),
      { passed: false, riskScore: 60 },
    ]);
    // The owner reads the reasons in plain words, without the engine's thresholds.
    expect(outcomes[5]!.failureReason).toBe(
      "The fraud check stopped this transfer: Too many transfers, or too much money, in a short time; " +
        "The transfer was sent without proof of a registered device",
    );

    const balance = async (token: string, id: string) =>
      (
        await stack.graphql<{ account: { balance: { minor: string } } }>(
          `query($id: ID!) { account(id: $id) { balance { minor } } }`,
          { id },
          as(token),
        )
      ).data!.account.balance.minor;
    expect(await balance(alice, from.id)).toBe("95000");
    expect(await balance(bob, to.id)).toBe("5000");
  });

  it("fails an account takeover at once with every reason, refunded, figures only for an ADMIN", async () => {
    // A stolen token used from another, unregistered device, to a new payee, for a large amount:
    // four rules fire (velocity by amount too; the claimed device is unproven), the longest
    // verdict the default rules give. It must refund on the verdict,
    // not after the fraud step's timeout (the refund command once refused such a long reason).
    const victim = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, {
      userId: randomUUID(),
      role: "CUSTOMER",
      deviceId: "victim-phone",
    });
    const thief = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER" });
    const admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
    const from = stack.graphql<{ openAccount: { id: string } }>(
      `mutation { openAccount(type: SAVINGS) { id } }`,
      {},
      { authorization: `Bearer ${victim}` },
    );
    const to = stack.graphql<{ openAccount: { number: string } }>(
      `mutation { openAccount(type: SAVINGS) { number } }`,
      {},
      { authorization: `Bearer ${thief}` },
    );
    const [fromId, toNumber] = [(await from).data!.openAccount.id, (await to).data!.openAccount.number];
    await stack.graphql(
      `mutation($id: ID!) { depositFunds(accountId: $id, amountMinor: "50000000", idempotencyKey: "takeover-deposit") { id } }`,
      { id: fromId },
      {
        authorization: `Bearer ${admin}`,
      },
    );
    const stolen = { authorization: `Bearer ${victim}`, "x-device-id": "thief-laptop" };
    const id = (
      await stack.graphql<{ initiateTransfer: { id: string } }>(
        `mutation($from: ID!, $to: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: "20000000", idempotencyKey: "takeover") { id } }`,
        { from: fromId, to: toNumber },
        stolen,
      )
    ).data!.initiateTransfer.id;
    type Seen = { transfer: { status: string; failureReason: string | null; fraudCheck: { reasons: string[] } | null } };
    const ended = await waitUntil(async () => {
      const result = await stack.graphql<Seen>(
        `query($id: ID!) { transfer(id: $id) { status failureReason fraudCheck { reasons } } }`,
        { id },
        stolen,
      );
      const transfer = result.data?.transfer;
      return transfer && transfer.status === "FAILED" && transfer;
    }, "the takeover transfer to fail");
    expect(ended.fraudCheck!.reasons).toEqual([
      "The amount is higher than we send without a further check",
      "Too many transfers, or too much money, in a short time",
      "The transfer was sent without proof of a registered device",
      "This is the first transfer to this payee",
    ]);
    // The verdict itself refunded it: a step timeout would say "did not complete in time".
    expect(ended.failureReason).toBe(`The fraud check stopped this transfer: ${ended.fraudCheck!.reasons.join("; ")}`);
    const checks = await stack.graphql<{ fraudChecks: Array<{ transferId: string; reasons: string[] }> }>(
      `{ fraudChecks(onlyFailed: true, first: 10) { transferId reasons } }`,
      {},
      { authorization: `Bearer ${admin}` },
    );
    const detailed = checks.data!.fraudChecks.find((check) => check.transferId === id)!;
    expect(detailed.reasons[0]).toMatch(/^Amount 20000000 is over the high-amount threshold of 10000000/);
    const balance = await stack.graphql<{ account: { balance: { minor: string } } }>(
      `query($id: ID!) { account(id: $id) { balance { minor } } }`,
      { id: fromId },
      {
        authorization: `Bearer ${victim}`,
      },
    );
    expect(balance.data!.account.balance.minor).toBe("50000000");
  });
});
