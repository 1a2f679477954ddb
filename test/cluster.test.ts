/**
 * The platform as `pnpm start --cluster` runs it: a 3-node JetStream cluster with R3 streams, two
 * replicas of every subgraph and of the gateway behind round-robin fronts. Transfers from several
 * clients while one NATS node is SIGKILLed and restarted and one replica of accounts and of
 * transactions is killed: every transfer ends, each step is applied once, the money is whole and
 * every event is in the audit chain. A subscriber on one gateway replica follows a transfer started
 * through the other.
 */
import { randomUUID } from "node:crypto";
import { createClient } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectJetStream, STREAMS } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { mintAccessToken, startTestStack, type TestStack } from "@vaultpay/testing";
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
const TRANSFERS = 60;
const DEPOSIT_MINOR = 1_000_000n;
const DEPOSITS = Array.from({ length: ACCOUNTS }, () => DEPOSIT_MINOR);
const IN_FLIGHT = 6;
const PACE_MS = 300;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("the platform as a cluster", () => {
  let stack: TestStack & { teardown: () => Promise<void> };

  beforeAll(async () => {
    stack = await startTestStack({ cluster: true, env: FAULT_TEST_ENV });
  });

  afterAll(async () => {
    await stack?.teardown();
  });

  it("runs two replicas of every process on R3 streams", async () => {
    expect(Object.values(stack.replicas).map((replicas) => replicas.length)).toEqual([2, 2, 2, 2, 2, 2]);
    const link = await connectJetStream(stack.nats.url, "cluster-test", createLogger({ service: "cluster-test", level: "silent" }), false);
    try {
      for (const name of Object.keys(STREAMS)) expect((await link.jsm.streams.info(name)).config.num_replicas, name).toBe(3);
    } finally {
      await link.nc.drain();
    }
  });

  it("a subscriber on one gateway replica sees a transfer started through the other", async () => {
    const [alice, bob] = await openFundedAccounts(stack, [100_000n, 1_000n]);
    const [first, second] = stack.replicas.gateway.map((replica) => replica.url);
    const client = createClient({
      url: first!.replace(/^http/, "ws"),
      connectionParams: { authorization: `Bearer ${alice!.token}` },
      lazy: true,
      retryAttempts: 0,
    });
    try {
      const started = await fetch(second!, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${alice!.token}` },
        body: JSON.stringify({
          query: `mutation($from: ID!, $to: String!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: "2500", idempotencyKey: $key) { id } }`,
          variables: { from: alice!.accountId, to: bob!.number, key: randomUUID() },
        }),
      }).then((response) => response.json() as Promise<{ data: { initiateTransfer: { id: string } } }>);
      const statuses: string[] = [];
      await new Promise<void>((resolve, reject) => {
        client.subscribe<{ transferStatusChanged: { status: string } }>(
          {
            query: `subscription($id: ID!) { transferStatusChanged(id: $id) { status } }`,
            variables: { id: started.data.initiateTransfer.id },
          },
          {
            next: (message) =>
              message.errors
                ? reject(new Error(JSON.stringify(message.errors)))
                : statuses.push(message.data!.transferStatusChanged.status),
            error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
            complete: () => resolve(),
          },
        );
      });
      expect(statuses.at(-1)).toBe("COMPLETED");
      expect(statuses).toContain("DEBITED");
    } finally {
      await client.dispose();
    }
  });

  it("keeps every transfer terminal, applied once, audited and the money whole while a NATS node and service replicas die", async () => {
    const customers = await openFundedAccounts(stack, DEPOSITS);
    const load = sendTransfers(stack, customers, { count: TRANSFERS, inFlight: IN_FLIGHT, paceMs: PACE_MS, keyPrefix: "cluster" });
    const inFlightAtFault: Record<string, InFlight | null> = {};
    const inFlight = () => whenTransfersInFlight(load, stack.databaseUrls.transactions);
    const node = stack.natsCluster!.nodes[1]!;
    // Each fault at a quarter more of the load (15, 30, 45 of 60 handed out), so every one meets
    // transfers in flight and the clients still sending, on a fast machine too.
    const faults = (async () => {
      await whenStarted(load, TRANSFERS / 4);
      inFlightAtFault.nats = await inFlight();
      await node.process.kill();
      await whenStarted(load, TRANSFERS / 2);
      inFlightAtFault.accounts = await inFlight();
      await stack.replicas.accounts[0]!.process.kill();
      await whenStarted(load, (TRANSFERS * 3) / 4);
      inFlightAtFault.transactions = await inFlight();
      await stack.replicas.transactions[1]!.process.kill();
      await sleep(2_000);
      await node.restart();
      await Promise.all([stack.restart("accounts", 0), stack.restart("transactions", 1)]);
    })();
    await Promise.all([load.done, faults]);
    expect(load.accepted.size).toBe(TRANSFERS);
    for (const [fault, counts] of Object.entries(inFlightAtFault))
      expect(inFlightCount(counts), `transfers in flight when ${fault} died`).toBeGreaterThanOrEqual(AT_FAULT.IN_FLIGHT);

    const outcome = await expectBankInvariant(stack, {
      transfers: TRANSFERS + 1,
      totalDepositedMinor: DEPOSITS.reduce((sum, value) => sum + value, 0n) + 101_000n,
    });
    expect(outcome.COMPLETED).toBeGreaterThan(0);
    await expectEveryEventAudited(stack);
    const admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
    const verified = await stack.graphql<{ verifyAuditChain: { valid: boolean } }>(
      `{ verifyAuditChain { valid } }`,
      {},
      { authorization: `Bearer ${admin}` },
    );
    expect(verified.data?.verifyAuditChain.valid).toBe(true);
    console.info(
      `cluster: ${JSON.stringify(outcome)}; in flight at each fault ${JSON.stringify(inFlightAtFault)}; refusals ${JSON.stringify(Object.fromEntries(load.errorCodes))}`,
    );
  }, 110_000);
});
