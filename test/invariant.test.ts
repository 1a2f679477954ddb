/**
 * The bank invariant under faults (the slow part of the suite): 200+ concurrent transfers between
 * 20+ accounts while the accounts service, the transactions service and NATS are each killed with
 * SIGKILL and restarted once. Afterwards every transfer is terminal, no step was applied twice, and
 * the money in all accounts equals the money ever deposited (nothing is in flight any more).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestStack, type TestStack } from "@vaultpay/testing";
import {
  AT_FAULT,
  FAULT_TEST_ENV,
  type InFlight,
  expectBankInvariant,
  inFlightCount,
  openFundedAccounts,
  sendTransfers,
  whenStarted,
  whenTransfersInFlight,
} from "./support/bank.ts";

const ACCOUNTS = 20;
const TRANSFERS = 200;
const DEPOSIT_MINOR = 1_000_000n;
/** One account gets little, so some of its transfers are REJECTED for lack of funds. */
const POOR_DEPOSIT_MINOR = 20_000n;
const DEPOSITS = Array.from({ length: ACCOUNTS }, (_, index) => (index === 0 ? POOR_DEPOSIT_MINOR : DEPOSIT_MINOR));
const IN_FLIGHT = 8;
/** Pause of each client between transfers, so that the 200 span the whole fault window. */
const PACE_MS = 350;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("bank invariant under faults", () => {
  let stack: TestStack & { teardown: () => Promise<void> };

  beforeAll(async () => {
    stack = await startTestStack({
      env: FAULT_TEST_ENV,
    });
  });

  afterAll(async () => {
    await stack?.teardown();
  });

  it("keeps every transfer terminal, applied once, and the money whole", async () => {
    const customers = await openFundedAccounts(stack, DEPOSITS);
    const load = sendTransfers(stack, customers, { count: TRANSFERS, inFlight: IN_FLIGHT, paceMs: PACE_MS, keyPrefix: "invariant" });
    // Transfers still in their saga when each process dies: the faults must hit work in progress,
    // each once another quarter of the load has been handed out (by progress, not the clock: see
    // whenStarted), so the clients are still sending at the last one.
    const inFlightAtKill: Record<string, InFlight | null> = {};
    const inFlight = () => whenTransfersInFlight(load, stack.databaseUrls.transactions);
    const faults = (async () => {
      await whenStarted(load, TRANSFERS / 4);
      inFlightAtKill.accounts = await inFlight();
      await stack.processes.get("accounts")!.kill();
      await sleep(2_000);
      await stack.restart("accounts");
      await whenStarted(load, TRANSFERS / 2);
      inFlightAtKill.transactions = await inFlight();
      await stack.processes.get("transactions")!.kill();
      await sleep(2_000);
      await stack.restart("transactions");
      await whenStarted(load, (TRANSFERS * 3) / 4);
      inFlightAtKill.nats = await inFlight();
      await stack.nats.process.kill();
      await sleep(2_000);
      await stack.nats.restart();
    })();
    await Promise.all([load.done, faults]);
    expect(load.accepted.size).toBe(TRANSFERS);
    for (const [killed, counts] of Object.entries(inFlightAtKill))
      expect(inFlightCount(counts), `transfers in flight when ${killed} was killed`).toBeGreaterThanOrEqual(AT_FAULT.IN_FLIGHT);

    const outcome = await expectBankInvariant(stack, {
      transfers: TRANSFERS,
      totalDepositedMinor: DEPOSITS.reduce((sum, value) => sum + value, 0n),
    });
    expect(outcome.COMPLETED).toBeGreaterThan(0);
    expect(outcome.FAILED).toBeGreaterThan(0);
    expect(outcome.REJECTED).toBeGreaterThan(0);
    console.info(`invariant: ${JSON.stringify(outcome)}; in flight at each kill ${JSON.stringify(inFlightAtKill)}`);
  }, 420_000);
});
