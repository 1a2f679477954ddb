/**
 * The saga commands through real JetStream into the accounts database: every step applied at most
 * once per transfer whatever the redeliveries, concurrent debits never overdraw, and each balance
 * equals its journal.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { createEvent, eventHeaders, startEventing, type Event, type EventData, type Eventing } from "@vaultpay/events";
import { generateKeyRingEnv, keyRingFrom } from "@vaultpay/crypto";
import { Lifecycle, createLogger } from "@vaultpay/kit";
import { createTestDatabase, startTestNats, waitUntil } from "@vaultpay/testing";
import { SqlPool, type SqlTransaction } from "@vaultpay/service";
import type { Account, Reader } from "./accounts.ts";
import { createDb, type Db } from "./db.ts";
import {
  VERDICT_CONSUMER,
  handleSagaCommand,
  handleSagaCommands,
  handleVerdicts,
  startSagaConsumers,
  startVerdictConsumer,
} from "./events.ts";
import { AccountsService } from "./service.ts";
import { journalSum, setAccountStatus } from "./store.ts";

const logger = createLogger({ service: "accounts-saga-test", level: "silent" });
const admin: Reader = { userId: "admin-1", role: "ADMIN" };
const context = { correlationId: "corr-saga", actor: {} };

describe("saga commands over JetStream", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  let sql: pg.Client;
  let service: AccountsService;
  // Two replicas of the service share the durable consumer, as in production.
  const lifecycles: Lifecycle[] = [];
  let eventing: Eventing<SqlTransaction>;
  let deposits = 0;

  beforeAll(async () => {
    [nats, database] = await Promise.all([startTestNats(), createTestDatabase("accounts")]);
    db = createDb(database.url);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    service = new AccountsService({ db, ring: keyRingFrom(generateKeyRingEnv()), afterCommit: () => undefined });
    for (let replica = 0; replica < 2; replica++) {
      const lifecycle = new Lifecycle(logger);
      lifecycles.push(lifecycle);
      // As in the service: consumers and relay on node-postgres (SqlPool).
      const pool = new SqlPool(database.url);
      lifecycle.onShutdown("raw SQL pool", () => pool.$disconnect());
      const replicaEventing = await startEventing({ natsUrl: nats.url, name: `accounts-${replica}`, logger, lifecycle, db: pool });
      await startVerdictConsumer(replicaEventing, logger);
      await startSagaConsumers(replicaEventing, logger);
      eventing ??= replicaEventing;
    }
  });

  afterAll(async () => {
    for (const lifecycle of lifecycles) await lifecycle.shutdown();
    await sql?.end();
    await db?.$disconnect();
    await Promise.all([nats?.stop(), database?.drop()]);
  });

  async function openFunded(userId: string, type: "SAVINGS" | "CURRENT", amountMinor: bigint): Promise<Account> {
    const account = await service.open({ userId, role: "CUSTOMER" }, type, "INR");
    if (amountMinor > 0n)
      await service.deposit(admin, { accountId: account.id, amountMinor, idempotencyKey: `deposit-${++deposits}-${randomUUID()}` });
    return account;
  }

  async function publish(event: Event, msgId: string = event.id): Promise<void> {
    await eventing.js.publish(event.type, JSON.stringify(event), { msgID: msgId, headers: eventHeaders(event) });
  }

  function initiated(data: EventData<"transaction.initiated">) {
    return createEvent("transaction.initiated", data, context);
  }

  /** The account.* answers written to the outbox for one transfer. */
  async function answers(transferId: string): Promise<Array<{ type: string; data: Record<string, unknown> }>> {
    const rows = await sql.query<{ type: string; payload: { data: Record<string, unknown> } }>(
      `SELECT type, payload FROM outbox_event WHERE payload->'data'->>'transferId' = $1 ORDER BY seq`,
      [transferId],
    );
    return rows.rows.map((row) => ({ type: row.type, data: row.payload.data }));
  }

  async function processedCount(): Promise<number> {
    return (await sql.query(`SELECT count(*)::int AS n FROM processed_event WHERE consumer = 'accounts-saga'`)).rows[0].n;
  }

  async function balanceOf(account: Account): Promise<bigint> {
    const balance = (await service.get(admin, account.id)).balanceMinor;
    expect(await journalSum(db, account.id)).toBe(balance);
    return balance;
  }

  it("debits, credits and refunds once per transfer, whatever the redeliveries", async () => {
    const from = await openFunded("saga-user-1", "SAVINGS", 1_000n);
    const to = await openFunded("saga-user-2", "SAVINGS", 0n);
    const transferId = randomUUID();
    const command = initiated({
      transferId,
      fromAccountId: from.id,
      toAccountId: to.id,
      amountMinor: "300",
      currency: "INR",
      userId: from.userId,
    });

    // The same event twice (a redelivery past JetStream's duplicate window), and the same command
    // re-published under a new event id (a saga retry): one debit, one answer per command.
    const before = await processedCount();
    await publish(command);
    await publish(command, `${command.id}-redelivered`);
    await publish(initiated({ ...command.data }));
    await waitUntil(async () => (await processedCount()) === before + 2, "both distinct command events processed");
    await waitUntil(async () => (await answers(transferId)).length === 2, "an answer per distinct command");
    expect(await answers(transferId)).toEqual([
      { type: "account.debited", data: { transferId, accountId: from.id, amountMinor: "300" } },
      { type: "account.debited", data: { transferId, accountId: from.id, amountMinor: "300" } },
    ]);
    expect(await balanceOf(from)).toBe(700n);

    const creditCommand = createEvent("transaction.credit.requested", { transferId, toAccountId: to.id, amountMinor: "300" }, context);
    await publish(creditCommand);
    await publish(creditCommand, `${creditCommand.id}-redelivered`);
    await publish(createEvent("transaction.credit.requested", { transferId, toAccountId: to.id, amountMinor: "300" }, context));
    await waitUntil(async () => (await answers(transferId)).filter((a) => a.type === "account.credited").length === 2, "credit answers");
    expect(await balanceOf(to)).toBe(300n);

    // Credited: the refund is refused, so the money cannot exist twice.
    await publish(
      createEvent(
        "transaction.refund.requested",
        { transferId, fromAccountId: from.id, amountMinor: "300", reason: "late fraud verdict" },
        context,
      ),
    );
    await waitUntil(async () => (await answers(transferId)).some((a) => a.type === "account.refund.rejected"), "refund refusal");
    expect((await answers(transferId)).at(-1)).toEqual({
      type: "account.refund.rejected",
      data: { transferId, accountId: from.id, reason: "ALREADY_CREDITED" },
    });
    expect(await balanceOf(from)).toBe(700n);
    const journal = await sql.query(`SELECT kind, amount_minor::text AS amount FROM journal_entry WHERE transfer_id = $1 ORDER BY seq`, [
      transferId,
    ]);
    expect(journal.rows).toEqual([
      { kind: "DEBIT", amount: "-300" },
      { kind: "CREDIT", amount: "300" },
    ]);
  });

  function verdict(transferId: string, passed: boolean) {
    const reasons = passed ? [] : ["Amount over the daily limit"];
    return createEvent(
      "fraud.check.completed",
      { transferId, passed, riskScore: passed ? 5 : 90, reasons, checkedAt: new Date().toISOString() },
      context,
    );
  }

  /** Every verdict published so far delivered and acknowledged by the verdict consumer's replicas. */
  async function verdictsSettled(): Promise<void> {
    await waitUntil(async () => {
      const info = await eventing.jsm.consumers.info("FRAUD", VERDICT_CONSUMER);
      return info.num_pending === 0 && info.num_ack_pending === 0;
    }, "every verdict handled");
  }

  it("credits a passed fraud verdict to the destination its debit named, once; failed verdicts pass by", async () => {
    const from = await openFunded("saga-verdict-1", "SAVINGS", 1_000n);
    const to = await openFunded("saga-verdict-2", "SAVINGS", 0n);
    const [passedId, failedId, refundedId, legacyId, unknownId] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const debit = (transferId: string, amountMinor: string) =>
      publish(initiated({ transferId, fromAccountId: from.id, toAccountId: to.id, amountMinor, currency: "INR", userId: from.userId }));
    for (const [transferId, amount] of [
      [passedId, "300"],
      [failedId, "100"],
      [refundedId, "50"],
      [legacyId, "20"],
    ] as const) {
      await debit(transferId, amount);
      await waitUntil(async () => (await answers(transferId)).length === 1, "the debit");
    }
    expect(await balanceOf(from)).toBe(530n);
    // A debit decided before destinations were recorded: no verdict can credit it (its deadline refunds it).
    await sql.query(`UPDATE saga_decision SET to_account_id = NULL WHERE transfer_id = $1`, [legacyId]);
    // The unwinding came first for this one: its verdict must not credit.
    await publish(
      createEvent(
        "transaction.refund.requested",
        { transferId: refundedId, fromAccountId: from.id, amountMinor: "50", reason: "timeout" },
        context,
      ),
    );
    await waitUntil(async () => (await answers(refundedId)).length === 2, "the refund");

    // The passed verdict redelivered and sent again (fraud answering a retried request): one credit.
    const passed = verdict(passedId, true);
    await publish(passed);
    await publish(passed, `${passed.id}-redelivered`);
    const again = verdict(passedId, true);
    await publish(again);
    for (const transferId of [failedId, refundedId, legacyId, unknownId]) await publish(verdict(transferId, transferId !== failedId));
    await verdictsSettled();

    expect((await answers(passedId)).map((a) => [a.type, a.data.accountId, a.data.amountMinor])).toEqual([
      ["account.debited", from.id, "300"],
      ["account.credited", to.id, "300"],
      ["account.credited", to.id, "300"],
    ]);
    expect((await answers(failedId)).map((a) => a.type)).toEqual(["account.debited"]);
    expect((await answers(refundedId)).map((a) => [a.type, a.data.reason])).toEqual([
      ["account.debited", undefined],
      ["account.refunded", undefined],
      ["account.credit.rejected", "ALREADY_REFUNDED"],
    ]);
    expect((await answers(legacyId)).map((a) => a.type)).toEqual(["account.debited"]);
    expect(await answers(unknownId)).toEqual([]);
    expect(await balanceOf(from)).toBe(580n);
    expect(await balanceOf(to)).toBe(300n);
    // The credit answers the verdict: it names the verdict as its cause.
    const cause = await sql.query(
      `SELECT payload->>'causationId' AS cause FROM outbox_event WHERE type = 'account.credited' AND payload->'data'->>'transferId' = $1 ORDER BY seq LIMIT 1`,
      [passedId],
    );
    expect([passed.id, again.id]).toContain(cause.rows[0].cause);
    // Failed verdicts pass by without a transaction: no processed record.
    const recorded = await sql.query(`SELECT count(*)::int AS n FROM processed_event WHERE consumer = $1 AND event_id = $2::uuid`, [
      VERDICT_CONSUMER,
      failedId,
    ]);
    expect(recorded.rows[0].n).toBe(0);
  });

  it("refunds a debit once, and never credits after a refund", async () => {
    const from = await openFunded("saga-user-3", "SAVINGS", 500n);
    const to = await openFunded("saga-user-4", "SAVINGS", 0n);
    const transferId = randomUUID();
    await publish(
      initiated({ transferId, fromAccountId: from.id, toAccountId: to.id, amountMinor: "200", currency: "INR", userId: from.userId }),
    );
    await waitUntil(async () => (await answers(transferId)).length === 1, "the debit");
    const refundData = { transferId, fromAccountId: from.id, amountMinor: "200", reason: "fraud check failed" };
    const refundCommand = createEvent("transaction.refund.requested", refundData, context);
    await publish(refundCommand);
    await publish(refundCommand, `${refundCommand.id}-again`);
    await publish(createEvent("transaction.refund.requested", refundData, context));
    // Two replicas consume in parallel: the credit goes out only once a refund is known to have landed.
    await waitUntil(async () => (await answers(transferId)).length === 3, "both refund answers");
    await publish(createEvent("transaction.credit.requested", { transferId, toAccountId: to.id, amountMinor: "200" }, context));
    await waitUntil(async () => (await answers(transferId)).length === 4, "the credit refusal");
    expect((await answers(transferId)).map((a) => a.type)).toEqual([
      "account.debited",
      "account.refunded",
      "account.refunded",
      "account.credit.rejected",
    ]);
    expect((await answers(transferId)).at(-1)?.data).toEqual({ transferId, accountId: to.id, reason: "ALREADY_REFUNDED" });
    expect(await balanceOf(from)).toBe(500n);
    expect(await balanceOf(to)).toBe(0n);

    // A refund of a transfer that never debited creates no money.
    const ghost = randomUUID();
    await publish(
      createEvent("transaction.refund.requested", { transferId: ghost, fromAccountId: from.id, amountMinor: "50", reason: "x" }, context),
    );
    await waitUntil(async () => (await answers(ghost)).length === 1, "the ghost refund answer");
    expect((await answers(ghost))[0]).toEqual({
      type: "account.refund.rejected",
      data: { transferId: ghost, accountId: from.id, reason: "DEBIT_NOT_FOUND" },
    });
    expect(await balanceOf(from)).toBe(500n);

    // The debit of that transfer arriving late (the saga timed it out and refunded) takes nothing.
    await publish(
      initiated({ transferId: ghost, fromAccountId: from.id, toAccountId: to.id, amountMinor: "50", currency: "INR", userId: from.userId }),
    );
    await waitUntil(async () => (await answers(ghost)).length === 2, "the late debit's answer");
    expect((await answers(ghost))[1]).toEqual({
      type: "account.debit.rejected",
      data: { transferId: ghost, accountId: from.id, reason: "TRANSFER_CANCELLED" },
    });
    expect(await balanceOf(from)).toBe(500n);
  });

  it("rejects debits with a reason: funds, frozen, not found, someone else's, currency", async () => {
    const from = await openFunded("saga-user-5", "SAVINGS", 100n);
    const frozen = await openFunded("saga-user-5", "CURRENT", 100n);
    await setAccountStatus(db, frozen.id, "FROZEN", "court order");
    const cases: Array<[Partial<EventData<"transaction.initiated">>, string]> = [
      [{ amountMinor: "101" }, "INSUFFICIENT_FUNDS"],
      [{ fromAccountId: frozen.id }, "ACCOUNT_NOT_ACTIVE"],
      [{ fromAccountId: randomUUID() }, "ACCOUNT_NOT_FOUND"],
      [{ fromAccountId: "not-a-uuid" }, "ACCOUNT_NOT_FOUND"],
      [{ userId: "saga-someone-else" }, "ACCOUNT_NOT_FOUND"],
      [{ currency: "USD" }, "CURRENCY_MISMATCH"],
    ];
    const transferIds: string[] = [];
    for (const [change, _reason] of cases) {
      const transferId = randomUUID();
      transferIds.push(transferId);
      await publish(
        initiated({
          transferId,
          fromAccountId: from.id,
          toAccountId: randomUUID(),
          amountMinor: "50",
          currency: "INR",
          userId: from.userId,
          ...change,
        }),
      );
    }
    for (const [index, [, reason]] of cases.entries()) {
      const transferId = transferIds[index]!;
      await waitUntil(async () => (await answers(transferId)).length === 1, `rejection ${reason}`);
      expect((await answers(transferId))[0]).toMatchObject({ type: "account.debit.rejected", data: { transferId, reason } });
    }
    // A frozen destination refuses the credit; the source keeps its debit until the saga refunds it.
    const transferId = randomUUID();
    await publish(
      initiated({ transferId, fromAccountId: from.id, toAccountId: frozen.id, amountMinor: "60", currency: "INR", userId: from.userId }),
    );
    await waitUntil(async () => (await answers(transferId)).length === 1, "the debit");
    await publish(createEvent("transaction.credit.requested", { transferId, toAccountId: frozen.id, amountMinor: "60" }, context));
    await waitUntil(async () => (await answers(transferId)).length === 2, "debit and credit refusal");
    expect((await answers(transferId))[1]).toEqual({
      type: "account.credit.rejected",
      data: { transferId, accountId: frozen.id, reason: "ACCOUNT_NOT_ACTIVE" },
    });
    expect(await balanceOf(from)).toBe(40n);
    expect(await balanceOf(frozen)).toBe(100n);
  });

  it("50 concurrent debits of 100 on 1000 over JetStream: exactly 10 succeed, never negative", async () => {
    const from = await openFunded("saga-user-6", "SAVINGS", 1_000n);
    const transferIds = Array.from({ length: 50 }, () => randomUUID());
    await Promise.all(
      transferIds.map((transferId) =>
        publish(
          initiated({
            transferId,
            fromAccountId: from.id,
            toAccountId: randomUUID(),
            amountMinor: "100",
            currency: "INR",
            userId: from.userId,
          }),
        ),
      ),
    );
    const outcomes = await waitUntil(async () => {
      const all = [];
      for (const transferId of transferIds) all.push(await answers(transferId));
      return all.every((a) => a.length === 1) && all.map((a) => a[0]!);
    }, "50 answers");
    expect(outcomes.filter((o) => o.type === "account.debited")).toHaveLength(10);
    expect(outcomes.filter((o) => o.type === "account.debit.rejected" && o.data.reason === "INSUFFICIENT_FUNDS")).toHaveLength(40);
    expect(await balanceOf(from)).toBe(0n);
  });

  it("50 debits racing in parallel transactions: the row lock serializes them", async () => {
    const from = await openFunded("saga-user-7", "SAVINGS", 1_000n);
    const commands = Array.from({ length: 50 }, () =>
      initiated({
        transferId: randomUUID(),
        fromAccountId: from.id,
        toAccountId: randomUUID(),
        amountMinor: "100",
        currency: "INR",
        userId: from.userId,
      }),
    );
    // Straight into the handler, 50 transactions at once (more than the pool): no consumer ordering helps here.
    await Promise.all(
      commands.map((command) => db.$transaction((tx) => handleSagaCommand(command, tx, logger), { timeout: 60_000, maxWait: 60_000 })),
    );
    const debited = await sql.query(
      `SELECT count(*)::int AS n, min(balance_after_minor)::int AS low FROM journal_entry WHERE account_id = $1 AND kind = 'DEBIT'`,
      [from.id],
    );
    expect(debited.rows[0]).toEqual({ n: 10, low: 0 });
    expect(await balanceOf(from)).toBe(0n);
  });

  it("credits racing debits of the same account in parallel transactions: each sees the balance the last one committed", async () => {
    // Credits arrive as passed verdicts: their account (the debit's destination) is locked in the
    // statement that reads the transfers' decisions, which may wait for another batch's lock on it.
    const payers = await Promise.all(Array.from({ length: 10 }, (_, index) => openFunded(`saga-race-payer-${index}`, "SAVINGS", 100n)));
    const hub = await openFunded("saga-race-hub", "SAVINGS", 1_000n);
    const credited = payers.map((payer) => ({ payer, transferId: randomUUID() }));
    for (const { payer, transferId } of credited)
      await db.$transaction((tx) =>
        handleSagaCommand(
          initiated({
            transferId,
            fromAccountId: payer.id,
            toAccountId: hub.id,
            amountMinor: "100",
            currency: "INR",
            userId: payer.userId,
          }),
          tx,
          logger,
        ),
      );
    const outgoing = Array.from({ length: 10 }, () =>
      initiated({
        transferId: randomUUID(),
        fromAccountId: hub.id,
        toAccountId: randomUUID(),
        amountMinor: "100",
        currency: "INR",
        userId: hub.userId,
      }),
    );
    const options = { timeout: 60_000, maxWait: 60_000 };
    await Promise.all([
      ...credited.map(({ transferId }) => db.$transaction((tx) => handleVerdicts([verdict(transferId, true)], tx, logger), options)),
      ...outgoing.map((command) => db.$transaction((tx) => handleSagaCommand(command, tx, logger), options)),
    ]);
    // 1,000 + 10 × 100 in and 10 × 100 out, in whatever order (enough for every debit either way): no update lost.
    expect(await balanceOf(hub)).toBe(1_000n);
    const journal = await sql.query(
      `SELECT kind::text, count(*)::int AS n FROM journal_entry WHERE account_id = $1 GROUP BY kind ORDER BY kind`,
      [hub.id],
    );
    expect(journal.rows).toEqual([
      { kind: "CREDIT", n: 10 },
      { kind: "DEBIT", n: 10 },
      { kind: "DEPOSIT", n: 1 },
    ]);
  });

  it("one batch decides its commands in order, as one by one would, and a redelivered batch applies nothing", async () => {
    const from = await openFunded("saga-user-9", "SAVINGS", 500n);
    const to = await openFunded("saga-user-10", "SAVINGS", 0n);
    const [first, second, third] = [randomUUID(), randomUUID(), randomUUID()];
    const debitOf = (transferId: string, amountMinor: string) =>
      initiated({ transferId, fromAccountId: from.id, toAccountId: to.id, amountMinor, currency: "INR", userId: from.userId });
    const firstDebit = debitOf(first, "300");
    const batch = [
      firstDebit,
      // Only 200 left after the first: refused on the balance the batch itself left.
      debitOf(second, "300"),
      createEvent("transaction.credit.requested", { transferId: first, toAccountId: to.id, amountMinor: "300" }, context),
      // The first debit again under a new event id: the same answer, no second movement.
      initiated({ ...firstDebit.data }),
      // A refund of the credited first transfer is refused; the third's refund comes before its debit.
      createEvent(
        "transaction.refund.requested",
        { transferId: first, fromAccountId: from.id, amountMinor: "300", reason: "late" },
        context,
      ),
      createEvent(
        "transaction.refund.requested",
        { transferId: third, fromAccountId: from.id, amountMinor: "100", reason: "timeout" },
        context,
      ),
      debitOf(third, "100"),
    ];
    await db.$transaction((tx) => handleSagaCommands(batch, tx, logger));
    expect((await answers(first)).map((a) => [a.type, a.data.reason ?? a.data.amountMinor])).toEqual([
      ["account.debited", "300"],
      ["account.credited", "300"],
      ["account.debited", "300"],
      ["account.refund.rejected", "ALREADY_CREDITED"],
    ]);
    expect((await answers(second)).map((a) => [a.type, a.data.reason])).toEqual([["account.debit.rejected", "INSUFFICIENT_FUNDS"]]);
    expect((await answers(third)).map((a) => [a.type, a.data.reason])).toEqual([
      ["account.refund.rejected", "DEBIT_NOT_FOUND"],
      ["account.debit.rejected", "TRANSFER_CANCELLED"],
    ]);
    expect(await balanceOf(from)).toBe(200n);
    expect(await balanceOf(to)).toBe(300n);
    // Each answer names the command it answers (causation) and keeps its correlation id.
    const causes = await sql.query(
      `SELECT payload->>'causationId' AS cause FROM outbox_event WHERE payload->'data'->>'transferId' = ANY($1) ORDER BY seq`,
      [[first, second, third]],
    );
    expect(causes.rows.map((row) => row.cause)).toEqual(batch.map((command) => command.id));
    // The same batch again (a redelivery that reached the handler): answers repeated, nothing applied.
    await db.$transaction((tx) => handleSagaCommands(batch, tx, logger));
    expect(await balanceOf(from)).toBe(200n);
    expect(
      (await sql.query(`SELECT count(*)::int AS n FROM journal_entry WHERE transfer_id = ANY($1)`, [[first, second, third]])).rows[0].n,
    ).toBe(2);
  });

  it("recording as the consumer: events are fresh once, a rolled-back batch records nothing, and a repeat answers nothing", async () => {
    const from = await openFunded("saga-record-1", "SAVINGS", 500n);
    const to = await openFunded("saga-record-2", "SAVINGS", 0n);
    const transferId = randomUUID();
    const debit = initiated({
      transferId,
      fromAccountId: from.id,
      toAccountId: to.id,
      amountMinor: "200",
      currency: "INR",
      userId: from.userId,
    });
    const recorded = async () =>
      (
        await sql.query(`SELECT count(*)::int AS n FROM processed_event WHERE consumer = $1 AND event_id = $2::uuid`, [
          "recording-test",
          debit.id,
        ])
      ).rows[0].n;
    // A batch that fails after its first statement takes its processed record back with it.
    await expect(
      db.$transaction(async (tx) => {
        await handleSagaCommands([debit], tx, logger, undefined, "recording-test");
        throw new Error("rolled back");
      }),
    ).rejects.toThrow("rolled back");
    expect(await recorded()).toBe(0);
    expect(await answers(transferId)).toEqual([]);
    await db.$transaction((tx) => handleSagaCommands([debit], tx, logger, undefined, "recording-test"));
    expect(await recorded()).toBe(1);
    // Delivered again (the ack was lost): skipped whole, not even answered again.
    await db.$transaction((tx) => handleSagaCommands([debit, debit], tx, logger, undefined, "recording-test"));
    expect((await answers(transferId)).map((a) => a.type)).toEqual(["account.debited"]);
    expect(await balanceOf(from)).toBe(300n);
    // A passed verdict likewise: credited once, however often it comes.
    const passed = verdict(transferId, true);
    for (let round = 0; round < 2; round++)
      await db.$transaction((tx) => handleVerdicts([passed], tx, logger, undefined, "recording-test"));
    expect((await answers(transferId)).map((a) => a.type)).toEqual(["account.debited", "account.credited"]);
    expect(await balanceOf(to)).toBe(200n);
  });

  it("a journal row can never be applied twice for the same transfer, step and account", async () => {
    const from = await openFunded("saga-user-8", "SAVINGS", 100n);
    const transferId = randomUUID();
    const insert = (balanceAfter: number) =>
      sql.query(
        `INSERT INTO journal_entry (account_id, kind, transfer_id, amount_minor, balance_after_minor) VALUES ($1, 'CREDIT', $2, 1, $3)`,
        [from.id, transferId, balanceAfter],
      );
    // Inside a transaction that is rolled back: the account's balance keeps matching its journal.
    await sql.query("BEGIN");
    try {
      await insert(101);
      await expect(insert(102)).rejects.toThrow(/journal_entry_transfer_id_kind_account_id_key/);
    } finally {
      await sql.query("ROLLBACK");
    }
    expect(await balanceOf(from)).toBe(100n);
  });
});
