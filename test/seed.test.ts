/** `pnpm seed` against a running stack: customers who can sign in, funded accounts; idempotent. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "@vaultpay/testing";
import { seed } from "../scripts/seed.ts";

describe("pnpm seed", () => {
  let stack: TestStack & { teardown: () => Promise<void> };

  beforeAll(async () => {
    stack = await startTestStack({ env: { RATE_LIMIT_CREDENTIAL_ATTEMPTS: "100" } });
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  it("creates funded demo customers through the public API, and a second run changes nothing", async () => {
    const options = {
      gatewayUrl: stack.gatewayUrl,
      adminEmail: "admin@vaultpay.local",
      adminPassword: "VaultPay-dev-admin-1",
      log: () => undefined,
    };
    const first = await seed(options);
    const again = await seed(options);
    expect(again.map((c) => c.accountId)).toEqual(first.map((c) => c.accountId));
    const balances = await Promise.all(
      again.map(async (customer) => {
        const result = await stack.graphql<{ myAccounts: Array<{ balance: { minor: string } }> }>(
          `{ myAccounts { balance { minor } } }`,
          {},
          {
            authorization: `Bearer ${customer.accessToken}`,
          },
        );
        return result.data!.myAccounts.map((a) => a.balance.minor);
      }),
    );
    expect(balances).toEqual([["5000000"], ["1000000"]]);
  });
});
