/**
 * The event bus is not a back door: the stack's NATS refuses clients without credentials, every
 * process connects as its own user, and a user may publish only its own service's events
 * (packages/events/src/permissions.ts). A saga command or a fraud verdict moves money, so a forged
 * one is refused unless it comes from the service that owns it.
 */
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEvent, eventHeaders, eventSubject, natsServers, type Event } from "@vaultpay/events";
import { PROCESS_NAMES } from "@vaultpay/stack";
import { startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";
import { openFundedAccounts, type Customer } from "./support/bank.ts";

let stack: TestStack & { teardown: () => Promise<void> };
let victim: Customer;
let thief: Customer;

beforeAll(async () => {
  stack = await startTestStack();
  [victim, thief] = (await openFundedAccounts(stack, [100_000n, 1n])) as [Customer, Customer];
}, 120_000);

afterAll(async () => {
  await stack?.teardown();
});

/** The user id a customer's token names. */
function userIdOf(customer: Customer): string {
  return JSON.parse(Buffer.from(customer.token.split(".")[1]!, "base64url").toString("utf8")).sub as string;
}

async function balanceMinor(customer: Customer): Promise<bigint> {
  const answer = await stack.graphql<{ account: { balance: { minor: string } } }>(
    `query($id: ID!) { account(id: $id) { balance { minor } } }`,
    { id: customer.accountId },
    { authorization: `Bearer ${customer.token}` },
  );
  return BigInt(answer.data!.account.balance.minor);
}

/** What a thief on the network would send: a debit of the victim naming the thief's account, then a passed verdict. */
function forgedTheft(amountMinor: bigint): Event[] {
  const transferId = randomUUID();
  return [
    createEvent("transaction.initiated", {
      transferId,
      fromAccountId: victim.accountId,
      toAccountId: thief.accountId,
      amountMinor: String(amountMinor),
      currency: "INR",
      userId: userIdOf(victim),
    }),
    createEvent("fraud.check.completed", {
      transferId,
      passed: true,
      riskScore: 0,
      reasons: [],
      checkedAt: new Date().toISOString(),
    }),
  ];
}

/** Publishes each event to JetStream as `url`'s user; what each publish answered. */
async function publishAs(url: string, events: readonly Event[]): Promise<string[]> {
  const nc = await connect(natsServers(url));
  try {
    const js = jetstream(nc);
    const outcomes: string[] = [];
    for (const event of events) {
      const sent = js.publish(eventSubject(event), JSON.stringify(event), {
        msgID: event.id,
        headers: eventHeaders(event),
        timeout: 5_000,
      });
      outcomes.push(
        await sent.then(
          () => "stored",
          (error: unknown) => (error as Error).message,
        ),
      );
    }
    return outcomes;
  } finally {
    await nc.close();
  }
}

describe("NATS users and permissions", () => {
  it("refuses a client that brings no credentials", async () => {
    const { servers } = natsServers(stack.nats.url);
    await expect(connect({ servers, reconnect: false })).rejects.toThrow(/Authorization Violation/);
  });

  it("runs every process as its own NATS user, none as the operator", () => {
    for (const name of PROCESS_NAMES) {
      const pid = stack.processes.get(name)!.child.pid!;
      const environment = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
      const natsUrl = environment.find((entry) => entry.startsWith("NATS_URL="))!.slice("NATS_URL=".length);
      expect(natsServers(natsUrl).user, name).toBe(name);
      expect(natsUrl, name).toBe(stack.nats.urlFor(name));
    }
  });

  it("refuses a debit and a verdict forged with the gateway's credentials, and the victim keeps the money", async () => {
    const before = await balanceMinor(victim);
    const outcomes = await publishAs(stack.nats.urlFor("gateway"), forgedTheft(60_000n));
    expect(outcomes).toEqual([
      expect.stringMatching(/Permissions Violation for Publish to "transaction\.initiated"/),
      expect.stringMatching(/Permissions Violation for Publish to "fraud\.check\.completed"/),
    ]);
    // The fraud service may give verdicts but not start transfers.
    const [initiated] = await publishAs(stack.nats.urlFor("fraud"), forgedTheft(60_000n).slice(0, 1));
    expect(initiated).toMatch(/Permissions Violation for Publish to "transaction\.initiated"/);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await balanceMinor(victim)).toBe(before);
    expect(await balanceMinor(thief)).toBe(1n);
  });

  it("the same forgery with unrestricted credentials does move the money: the permissions are what stop it", async () => {
    const before = await balanceMinor(victim);
    const outcomes = await publishAs(stack.nats.url, forgedTheft(25_000n));
    expect(outcomes).toEqual(["stored", "stored"]);
    await waitUntil(async () => (await balanceMinor(thief)) === 25_001n, "the forged transfer credited", 30_000);
    expect(await balanceMinor(victim)).toBe(before - 25_000n);
  });

  it("lets no service delete or empty a stream, and only audit delete messages, in DLQ only", async () => {
    for (const user of ["gateway", "transactions", "audit"] as const) {
      const nc = await connect(natsServers(stack.nats.urlFor(user)));
      try {
        const jsm = await jetstreamManager(nc);
        await expect(jsm.streams.delete("TRANSACTIONS"), user).rejects.toThrow(/Permissions Violation/);
        await expect(jsm.streams.purge("ACCOUNTS"), user).rejects.toThrow(/Permissions Violation/);
        await expect(jsm.streams.deleteMessage("TRANSACTIONS", 1), user).rejects.toThrow(/Permissions Violation/);
        // Reading stays open to every service (see permissions.ts).
        expect((await jsm.streams.info("ACCOUNTS")).state.messages, user).toBeGreaterThan(0);
      } finally {
        await nc.close();
      }
    }
  });
});
