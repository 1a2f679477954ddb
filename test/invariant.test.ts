/**
 * The bank invariant under faults (the slow part of the suite): 200+ concurrent transfers between
 * 20+ accounts while the accounts service, the transactions service and NATS are each killed with
 * SIGKILL and restarted once. Afterwards every transfer is terminal, no step was applied twice, and
 * the money in all accounts equals the money ever deposited (nothing is in flight any more).
 */
import { randomInt, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { fraudOnlyOnAmount, mintAccessToken, startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";

const ACCOUNTS = 20;
const TRANSFERS = 200;
const DEPOSIT_MINOR = 1_000_000n;
/** One account gets little, so some of its transfers are REJECTED for lack of funds. */
const POOR_DEPOSIT_MINOR = 20_000n;
const TOTAL_DEPOSITED = DEPOSIT_MINOR * BigInt(ACCOUNTS - 1) + POOR_DEPOSIT_MINOR;
const IN_FLIGHT = 8;
/** Pause of each client between transfers, so that the 200 span the whole fault window. */
const PACE_MS = 350;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("bank invariant under faults", () => {
  let stack: TestStack & { teardown: () => Promise<void> };
  let accountsSql: pg.Client;
  let transactionsSql: pg.Client;

  beforeAll(async () => {
    stack = await startTestStack({
      env: {
        SAGA_STEP_TIMEOUT_MS: "2000",
        SAGA_MAX_STEP_ATTEMPTS: "4",
        SAGA_SWEEP_INTERVAL_MS: "250",
        // Some transfers fail the fraud check (and are refunded).
        ...fraudOnlyOnAmount(40_000n),
        RATE_LIMIT_OPERATIONS: "100000",
      },
    });
    accountsSql = new pg.Client({ connectionString: stack.databaseUrls.accounts });
    transactionsSql = new pg.Client({ connectionString: stack.databaseUrls.transactions });
    await Promise.all([accountsSql.connect(), transactionsSql.connect()]);
  });

  afterAll(async () => {
    await Promise.all([accountsSql?.end(), transactionsSql?.end()]);
    await stack?.teardown();
  });

  it("keeps every transfer terminal, applied once, and the money whole", async () => {
    const admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
    const customers = await Promise.all(
      Array.from({ length: ACCOUNTS }, async (_, index) => {
        const userId = randomUUID();
        const token = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId, role: "CUSTOMER", expiresInSeconds: 3600 });
        const opened = await stack.graphql<{ openAccount: { id: string; number: string } }>(`mutation { openAccount(type: SAVINGS) { id number } }`, {}, { authorization: `Bearer ${token}` });
        const account = opened.data!.openAccount;
        const deposited = await stack.graphql(
          `mutation($id: ID!, $amount: MinorUnits!, $key: String!) { depositFunds(accountId: $id, amountMinor: $amount, idempotencyKey: $key) { id } }`,
          { id: account.id, amount: String(index === 0 ? POOR_DEPOSIT_MINOR : DEPOSIT_MINOR), key: `deposit-${randomUUID()}` },
          { authorization: `Bearer ${admin}` },
        );
        expect(deposited.errors).toBeUndefined();
        return { token, accountId: account.id, number: account.number };
      }),
    );
    await waitUntil(async () => (await transactionsSql.query(`SELECT count(*)::int AS n FROM account_directory`)).rows[0].n === ACCOUNTS, "the directory of accounts");

    // Each transfer is retried with its idempotency key until the platform accepts it, as a client would.
    const accepted = new Map<string, string>();
    const initiate = async (index: number) => {
      const from = customers[index % ACCOUNTS]!;
      const to = customers[(index + 1 + randomInt(ACCOUNTS - 1)) % ACCOUNTS]!;
      const key = `invariant-${index}`;
      const amount = String(randomInt(1_000, 60_000));
      for (let attempt = 0; attempt < 600; attempt++) {
        const result = await stack
          .graphql<{ initiateTransfer: { id: string } }>(
            `mutation($from: ID!, $to: String!, $amount: MinorUnits!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: $amount, idempotencyKey: $key) { id } }`,
            { from: from.accountId, to: to.number, amount, key },
            { authorization: `Bearer ${from.token}` },
          )
          .catch(() => undefined); // the gateway itself is up; a refused connection would be a bug surfacing below
        const id = result?.data?.initiateTransfer.id;
        if (id) {
          accepted.set(key, id);
          return;
        }
        await sleep(250);
      }
      throw new Error(`transfer ${key} never accepted`);
    };

    let next = 0;
    const workers = Array.from({ length: IN_FLIGHT }, async () => {
      while (next < TRANSFERS) {
        await initiate(next++);
        await sleep(PACE_MS);
      }
    });
    // Transfers still in their saga when each process dies: the faults must hit work in progress.
    const inFlightAtKill: Record<string, number> = {};
    const inFlight = async () => (await transactionsSql.query(`SELECT count(*)::int AS n FROM transfer WHERE status IN ('PENDING', 'DEBITED')`).catch(() => ({ rows: [{ n: -1 }] }))).rows[0].n as number;
    const faults = (async () => {
      await sleep(1_500);
      inFlightAtKill.accounts = await inFlight();
      await stack.processes.get("accounts")!.kill();
      await sleep(2_000);
      await stack.restart("accounts");
      await sleep(1_000);
      inFlightAtKill.transactions = await inFlight();
      await stack.processes.get("transactions")!.kill();
      await sleep(2_000);
      await stack.restart("transactions");
      await sleep(1_000);
      inFlightAtKill.nats = await inFlight();
      await stack.nats.process.kill();
      await sleep(2_000);
      await stack.nats.restart();
    })();
    await Promise.all([...workers, faults]);
    expect(accepted.size).toBe(TRANSFERS);
    expect(next).toBeGreaterThanOrEqual(TRANSFERS); // the clients were still sending when the last fault hit
    for (const [killed, count] of Object.entries(inFlightAtKill)) expect(count, `transfers in flight when ${killed} was killed`).toBeGreaterThan(0);

    await waitUntil(
      async () => (await transactionsSql.query(`SELECT count(*)::int AS n FROM transfer WHERE status NOT IN ('COMPLETED', 'FAILED', 'REJECTED')`)).rows[0].n === 0,
      "every transfer to reach a terminal status",
      240_000,
      500,
    );

    const transfers = (await transactionsSql.query<{ id: string; status: string; amount_minor: string }>(`SELECT id::text, status, amount_minor::text FROM transfer`)).rows;
    expect(transfers).toHaveLength(TRANSFERS);
    const statuses = new Map(transfers.map((t) => [t.id, t]));
    const journal = (await accountsSql.query<{ transfer_id: string; kind: string; n: number; amount: string }>(
      `SELECT transfer_id, kind, count(*)::int AS n, sum(amount_minor)::text AS amount FROM journal_entry WHERE transfer_id IS NOT NULL GROUP BY transfer_id, kind`,
    )).rows;
    const steps = new Map<string, Map<string, { n: number; amount: string }>>();
    for (const row of journal) {
      expect(statuses.has(row.transfer_id)).toBe(true);
      steps.set(row.transfer_id, (steps.get(row.transfer_id) ?? new Map()).set(row.kind, { n: row.n, amount: row.amount }));
    }
    const outcome: Record<string, number> = {};
    for (const transfer of transfers) {
      outcome[transfer.status] = (outcome[transfer.status] ?? 0) + 1;
      const applied = steps.get(transfer.id) ?? new Map();
      for (const step of applied.values()) expect(step.n).toBe(1); // never twice
      const kinds = [...applied.keys()].sort();
      if (transfer.status === "COMPLETED") {
        expect(kinds).toEqual(["CREDIT", "DEBIT"]);
        expect(applied.get("CREDIT")!.amount).toBe(transfer.amount_minor);
        expect(applied.get("DEBIT")!.amount).toBe(`-${transfer.amount_minor}`);
      } else if (transfer.status === "FAILED") {
        expect(kinds).toEqual(["DEBIT", "REFUND"]);
      } else {
        expect(kinds).toEqual([]); // REJECTED: nothing moved
      }
    }
    // All terminal, so nothing is in flight: the balances alone hold every deposited paisa.
    const totals = (await accountsSql.query<{ balances: string; journal: string }>(
      `SELECT (SELECT sum(balance_minor) FROM account)::text AS balances, (SELECT sum(amount_minor) FROM journal_entry)::text AS journal`,
    )).rows[0]!;
    expect(BigInt(totals.balances)).toBe(TOTAL_DEPOSITED);
    expect(BigInt(totals.journal)).toBe(TOTAL_DEPOSITED);
    const mismatched = await accountsSql.query(
      `SELECT a.id FROM account a LEFT JOIN journal_entry j ON j.account_id = a.id GROUP BY a.id, a.balance_minor HAVING a.balance_minor <> coalesce(sum(j.amount_minor), 0)`,
    );
    expect(mismatched.rowCount).toBe(0);
    expect(outcome.COMPLETED).toBeGreaterThan(0);
    expect(outcome.FAILED).toBeGreaterThan(0);
    expect(outcome.REJECTED).toBeGreaterThan(0);
    console.info(`invariant: ${JSON.stringify(outcome)}; in flight at each kill ${JSON.stringify(inFlightAtKill)}`);
  }, 420_000);
});
