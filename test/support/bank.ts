/**
 * The bank under load, for the fault tests (test/invariant.test.ts, test/crash.test.ts): customers
 * with funded accounts, paced clients that send transfers and retry them as an app would, and the
 * bank invariant checked on the services' own databases once every transfer has ended.
 */
import { randomInt, randomUUID } from "node:crypto";
import { expect } from "vitest";
import pg from "pg";
import { fraudOnlyOnAmount, mintAccessToken, waitUntil, type TestStack } from "@vaultpay/testing";

/**
 * Stack settings of the fault tests: short saga step timeouts so transfers caught by a fault end
 * quickly, some transfers failing fraud (and refunded), no rate limit in the way of the clients.
 */
export const FAULT_TEST_ENV = {
  SAGA_STEP_TIMEOUT_MS: "2000",
  SAGA_MAX_STEP_ATTEMPTS: "4",
  SAGA_SWEEP_INTERVAL_MS: "250",
  ...fraudOnlyOnAmount(40_000n),
  RATE_LIMIT_OPERATIONS: "100000",
} as const;

export interface Customer {
  token: string;
  accountId: string;
  number: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One customer per deposit, each with a SAVINGS account funded by an ADMIN; waits until transactions knows every account. */
export async function openFundedAccounts(stack: TestStack, depositsMinor: readonly bigint[]): Promise<Customer[]> {
  const admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
  const customers = await Promise.all(
    depositsMinor.map(async (depositMinor) => {
      const token = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, {
        userId: randomUUID(),
        role: "CUSTOMER",
        expiresInSeconds: 3600,
      });
      const opened = await stack.graphql<{ openAccount: { id: string; number: string } }>(
        `mutation { openAccount(type: SAVINGS) { id number } }`,
        {},
        { authorization: `Bearer ${token}` },
      );
      const account = opened.data!.openAccount;
      const deposited = await stack.graphql(
        `mutation($id: ID!, $amount: MinorUnits!, $key: String!) { depositFunds(accountId: $id, amountMinor: $amount, idempotencyKey: $key) { id } }`,
        { id: account.id, amount: String(depositMinor), key: `deposit-${randomUUID()}` },
        { authorization: `Bearer ${admin}` },
      );
      expect(deposited.errors).toBeUndefined();
      return { token, accountId: account.id, number: account.number };
    }),
  );
  const transactions = new pg.Client({ connectionString: stack.databaseUrls.transactions });
  await transactions.connect();
  try {
    const ids = customers.map((customer) => customer.accountId);
    await waitUntil(
      async () =>
        (await transactions.query(`SELECT count(*)::int AS n FROM account_directory WHERE account_id = ANY($1::text[])`, [ids])).rows[0]
          .n === ids.length,
      "the directory of accounts",
    );
  } finally {
    await transactions.end();
  }
  return customers;
}

export interface TransferLoad {
  /** Idempotency key → transfer id, for every transfer the platform accepted. */
  accepted: Map<string, string>;
  /** How often each error code answered an attempt (transport failures count as "NETWORK"). */
  errorCodes: Map<string, number>;
  /** Resolves when every transfer was accepted. */
  done: Promise<void>;
  /** Transfers handed to a client so far. */
  started(): number;
  /** Hands up to `count` of the transfers not yet handed out to as many extra senders at once (no pacing). */
  surge(count: number): void;
}

/**
 * `count` transfers between random pairs of customers from `inFlight` clients, each pausing
 * `paceMs` between transfers. Each transfer is retried with its idempotency key until the platform
 * accepts it, as a client would; every refusal's code is counted.
 */
export function sendTransfers(
  stack: TestStack,
  customers: readonly Customer[],
  options: { count: number; inFlight: number; paceMs: number; keyPrefix: string },
): TransferLoad {
  const accepted = new Map<string, string>();
  const errorCodes = new Map<string, number>();
  const count = (code: string) => errorCodes.set(code, (errorCodes.get(code) ?? 0) + 1);
  let next = 0;
  const initiate = async (index: number) => {
    const from = customers[index % customers.length]!;
    const to = customers[(index + 1 + randomInt(customers.length - 1)) % customers.length]!;
    const key = `${options.keyPrefix}-${index}`;
    const amount = String(randomInt(1_000, 60_000));
    for (let attempt = 0; attempt < 600; attempt++) {
      const result = await stack
        .graphql<{ initiateTransfer: { id: string } }>(
          `mutation($from: ID!, $to: String!, $amount: MinorUnits!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: $amount, idempotencyKey: $key) { id } }`,
          { from: from.accountId, to: to.number, amount, key },
          { authorization: `Bearer ${from.token}` },
        )
        .catch(() => undefined);
      const id = result?.data?.initiateTransfer.id;
      if (id) {
        accepted.set(key, id);
        return;
      }
      for (const error of result?.errors ?? [{ extensions: { code: "NETWORK" } }]) count(String(error.extensions?.code ?? "NONE"));
      await sleep(250);
    }
    throw new Error(`transfer ${key} never accepted`);
  };
  const clients = Array.from({ length: options.inFlight }, async () => {
    while (next < options.count) {
      await initiate(next++);
      await sleep(options.paceMs);
    }
  });
  const surges: Array<Promise<void>> = [];
  const surge = (extra: number) => {
    for (let sent = 0; sent < extra && next < options.count; sent++) {
      const sending = initiate(next++);
      sending.catch(() => undefined); // its failure is `done`'s, once the clients end
      surges.push(sending);
    }
  };
  // A surge hands out transfers only while some are left, so only before the last client ends.
  const done = Promise.all(clients).then(() => Promise.all(surges).then(() => undefined));
  return { accepted, errorCodes, done, started: () => next, surge };
}

/** Transfers in their saga, by status: PENDING (up to the debit), DEBITED (money held: the fraud check and the credit). */
export interface InFlight {
  PENDING: number;
  DEBITED: number;
}

/** Transfers in their saga now, or null while the database cannot answer. */
export async function transfersInFlight(transactionsUrl: string): Promise<InFlight | null> {
  const client = new pg.Client({ connectionString: transactionsUrl });
  try {
    await client.connect();
    const { rows } = await client.query<{ pending: number; debited: number }>(
      `SELECT count(*) FILTER (WHERE status = 'PENDING')::int AS pending, count(*) FILTER (WHERE status = 'DEBITED')::int AS debited
         FROM transfer WHERE status IN ('PENDING', 'DEBITED')`,
    );
    return { PENDING: rows[0]!.pending, DEBITED: rows[0]!.debited };
  } catch {
    return null;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Once the load has handed out `count` transfers. A fault timed by the load's progress, not by the
 * clock, lands while the clients are still sending, however fast the machine: the cluster test's
 * last fault, 3.5 s after the start by the clock, once came after its 60 transfers (3 s of pacing)
 * had all completed, and found none in flight.
 */
export async function whenStarted(load: Pick<TransferLoad, "started">, count: number): Promise<void> {
  await waitUntil(async () => load.started() >= count, `${count} transfers handed to the clients`, 60_000, 10);
}

/**
 * How much work a fault must meet: a surge of SURGE transfers sent at once, and the fault waits
 * until at least IN_FLIGHT are in their saga. Paced clients alone met 1–3 at a fault once the saga
 * took tens of milliseconds (2026-12-06), so a fault hit one or two sagas' state, not a crowd's.
 */
export const AT_FAULT = { SURGE: 12, IN_FLIGHT: 6 } as const;

/** Transfers in flight at a fault: at least AT_FAULT.IN_FLIGHT unless the timeout passed first. */
export const inFlightCount = (inFlight: InFlight | null): number => (inFlight ? inFlight.PENDING + inFlight.DEBITED : -1);

/**
 * Sends a surge of the load's transfers and waits (up to `timeoutMs`) until at least
 * AT_FAULT.IN_FLIGHT transfers are in their saga; says how many there were by status (the last
 * reading after the timeout: the test's own check then fails).
 */
export async function whenTransfersInFlight(
  load: Pick<TransferLoad, "surge">,
  transactionsUrl: string,
  timeoutMs = 5_000,
): Promise<InFlight | null> {
  load.surge(AT_FAULT.SURGE);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const inFlight = await transfersInFlight(transactionsUrl);
    if (inFlightCount(inFlight) >= AT_FAULT.IN_FLIGHT || Date.now() >= deadline) return inFlight;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Once every transfer has ended: each is terminal, each saga step was applied at most once and as
 * its status says, no money moved for a transfer transactions does not know, every balance equals
 * its journal, and the money in all accounts equals the money deposited. Returns the outcomes.
 */
export async function expectBankInvariant(
  stack: TestStack,
  options: { transfers: number; totalDepositedMinor: bigint },
): Promise<Record<string, number>> {
  const accountsSql = new pg.Client({ connectionString: stack.databaseUrls.accounts });
  const transactionsSql = new pg.Client({ connectionString: stack.databaseUrls.transactions });
  await Promise.all([accountsSql.connect(), transactionsSql.connect()]);
  try {
    await waitUntil(
      async () =>
        (await transactionsSql.query(`SELECT count(*)::int AS n FROM transfer WHERE status NOT IN ('COMPLETED', 'FAILED', 'REJECTED')`))
          .rows[0].n === 0,
      "every transfer to reach a terminal status",
      240_000,
      500,
    );
    const transfers = (
      await transactionsSql.query<{ id: string; status: string; amount_minor: string; failure_reason: string | null }>(
        `SELECT id::text, status, amount_minor::text, failure_reason FROM transfer`,
      )
    ).rows;
    expect(transfers).toHaveLength(options.transfers);
    const statuses = new Map(transfers.map((t) => [t.id, t]));
    const journal = (
      await accountsSql.query<{ transfer_id: string; kind: string; n: number; amount: string }>(
        `SELECT transfer_id, kind, count(*)::int AS n, sum(amount_minor)::text AS amount FROM journal_entry WHERE transfer_id IS NOT NULL GROUP BY transfer_id, kind`,
      )
    ).rows;
    const steps = new Map<string, Map<string, { n: number; amount: string }>>();
    for (const row of journal) {
      expect(statuses.has(row.transfer_id), `money moved for transfer ${row.transfer_id}, unknown to transactions`).toBe(true);
      steps.set(row.transfer_id, (steps.get(row.transfer_id) ?? new Map()).set(row.kind, { n: row.n, amount: row.amount }));
    }
    const outcome: Record<string, number> = {};
    for (const transfer of transfers) {
      outcome[transfer.status] = (outcome[transfer.status] ?? 0) + 1;
      // Refunded because a step outlived its deadline (not the fraud rules): how patient the saga was.
      const timedOut = /^The (.+) did not complete in time$/.exec(transfer.failure_reason ?? "");
      if (timedOut) outcome[`timedOut ${timedOut[1]}`] = (outcome[`timedOut ${timedOut[1]}`] ?? 0) + 1;
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
    const totals = (
      await accountsSql.query<{ balances: string; journal: string }>(
        `SELECT (SELECT sum(balance_minor) FROM account)::text AS balances, (SELECT sum(amount_minor) FROM journal_entry)::text AS journal`,
      )
    ).rows[0]!;
    expect(BigInt(totals.balances)).toBe(options.totalDepositedMinor);
    expect(BigInt(totals.journal)).toBe(options.totalDepositedMinor);
    const mismatched = await accountsSql.query(
      `SELECT a.id FROM account a LEFT JOIN journal_entry j ON j.account_id = a.id GROUP BY a.id, a.balance_minor HAVING a.balance_minor <> coalesce(sum(j.amount_minor), 0)`,
    );
    expect(mismatched.rowCount).toBe(0);
    return outcome;
  } finally {
    await Promise.all([accountsSql.end(), transactionsSql.end()]);
  }
}

/** Services whose outboxes feed the audit chain (the gateway publishes its request log directly). */
export const OUTBOX_SERVICES = ["auth", "accounts", "transactions", "fraud"] as const;

/** ack_wait of the consumers (30 s) and a margin for the backlog it leaves. */
const AUDIT_CATCH_UP_MS = 75_000;

/** Every event any service committed reaches the audit chain (waits for the consumers to catch up). */
export async function expectEveryEventAudited(stack: TestStack): Promise<void> {
  const audit = new pg.Client({ connectionString: stack.databaseUrls.audit });
  await audit.connect();
  try {
    for (const service of OUTBOX_SERVICES) {
      const outbox = new pg.Client({ connectionString: stack.databaseUrls[service] });
      await outbox.connect();
      try {
        const ids = (await outbox.query<{ id: string }>(`SELECT id::text FROM outbox_event`)).rows.map((row) => row.id);
        const missing = await waitUntil(
          async () => {
            const found = await audit.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_record WHERE event_id = ANY($1::uuid[])`, [
              ids,
            ]);
            return found.rows[0]!.n === ids.length ? [] : undefined;
          },
          `every ${service} outbox event in the audit chain`,
          // A message JetStream delivered through a node that then died (or whose ack died with
          // it) comes again only after the consumer's ack_wait (30 s): the chain is complete
          // within ack_wait plus the time to work through what queued meanwhile, not sooner.
          AUDIT_CATCH_UP_MS,
          250,
        );
        expect(missing).toEqual([]);
      } finally {
        await outbox.end();
      }
    }
  } finally {
    await audit.end();
  }
}
