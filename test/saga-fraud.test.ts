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
      (await stack.graphql<{ openAccount: { id: string; number: string } }>(`mutation { openAccount(type: CURRENT) { id number } }`, {}, as(token))).data!.openAccount;
    const [from, to] = [await open(alice), await open(bob)];
    await stack.graphql(`mutation($id: ID!) { depositFunds(accountId: $id, amountMinor: "100000", idempotencyKey: "fraud-burst-deposit") { id } }`, { id: from.id }, as(admin));

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
          const result = await stack.graphql<{ transfer: { status: string; failureReason: string | null; fraudCheck: { passed: boolean; riskScore: number } | null } }>(
            `query($id: ID!) { transfer(id: $id) { status failureReason fraudCheck { passed riskScore } } }`,
            { id },
            as(alice),
          );
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
    expect(outcomes[5]!.failureReason).toMatch(/^Fraud check failed \(risk 60\)/);
    expect(outcomes[5]!.failureReason).toMatch(/Velocity within 600 s: 6 transfers by this user/);
    expect(outcomes[5]!.failureReason).toMatch(/did not prove its device/);

    const balance = async (token: string, id: string) =>
      (await stack.graphql<{ account: { balance: { minor: string } } }>(`query($id: ID!) { account(id: $id) { balance { minor } } }`, { id }, as(token))).data!.account.balance.minor;
    expect(await balance(alice, from.id)).toBe("95000");
    expect(await balance(bob, to.id)).toBe("5000");
  });
});
