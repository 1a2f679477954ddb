/**
 * Storage of accounts, the journal, deposits and saga decisions (Prisma; set-based raw SQL where
 * a batch of saga steps pays). Every function that changes money takes the caller's transaction,
 * so the change, its journal row and its outbox event commit together. Rows are mapped to the domain's plain types at this edge.
 */
import {
  lockKeysRecordingProcessed,
  outboxRowsCte,
  outboxRowsParameters,
  takeBufferedEvents,
  type ProcessedRecording,
  type SqlExecutor,
} from "@vaultpay/events";
import { isUuid } from "@vaultpay/kit";
import { Prisma } from "./generated/prisma/client.ts";
import type { Db, Tx } from "./db.ts";
import type { Account, AccountStatus, AccountType } from "./accounts.ts";
import type { SagaBook, SagaDecisionRecord, SagaStep, TransferJournalRow } from "./saga.ts";

export type JournalKind = "DEPOSIT" | "DEBIT" | "CREDIT" | "REFUND";

const accountColumns = {
  id: true,
  userId: true,
  type: true,
  currency: true,
  status: true,
  statusReason: true,
  balanceMinor: true,
  numberLast4: true,
  createdAt: true,
} as const;

type AccountRow = Prisma.AccountGetPayload<{ select: typeof accountColumns }>;

function toAccount(row: AccountRow): Account {
  return { ...row, type: row.type as AccountType, status: row.status as AccountStatus };
}

/** A unique constraint violated on one of `columns` (Prisma P2002; driver adapters name fields in meta). */
export function isUniqueViolation(error: unknown, column: string): boolean {
  if (!(error instanceof Prisma.PrismaClientKnownRequestError) || error.code !== "P2002") return false;
  return JSON.stringify(error.meta ?? {}).includes(column) || error.message.includes(column);
}

export interface NewAccount {
  id: string;
  userId: string;
  type: AccountType;
  currency: string;
  numberEncrypted: string;
  numberKeyId: string;
  numberBlindIndex: string;
  numberLast4: string;
}

export async function insertAccount(tx: Tx, account: NewAccount): Promise<Account> {
  return toAccount(await tx.account.create({ data: account, select: accountColumns }));
}

export async function findAccount(db: Db | Tx, id: string): Promise<Account | undefined> {
  if (!isUuid(id)) return undefined;
  const row = await db.account.findUnique({ where: { id }, select: accountColumns });
  return row ? toAccount(row) : undefined;
}

/** Several accounts by id in one query (entity resolution of a page of transfers); ids that are not uuids find nothing. */
export async function findAccounts(db: Db | Tx, ids: readonly string[]): Promise<Account[]> {
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return [];
  const rows = await db.account.findMany({ where: { id: { in: valid } }, select: accountColumns, take: valid.length });
  return rows.map(toAccount);
}

/** Up to `limit` accounts per user: a user has at most one per type, so the bound is never reached. */
export async function findAccountsOfUser(db: Db | Tx, userId: string, limit = 50): Promise<Account[]> {
  const rows = await db.account.findMany({ where: { userId }, select: accountColumns, orderBy: { createdAt: "asc" }, take: limit });
  return rows.map(toAccount);
}

export async function findAccountByUserAndType(db: Db | Tx, userId: string, type: AccountType): Promise<Account | undefined> {
  const row = await db.account.findUnique({ where: { userId_type: { userId, type } }, select: accountColumns });
  return row ? toAccount(row) : undefined;
}

export async function findEncryptedNumber(db: Db | Tx, id: string): Promise<string | undefined> {
  if (!isUuid(id)) return undefined;
  return (await db.account.findUnique({ where: { id }, select: { numberEncrypted: true } }))?.numberEncrypted;
}

/**
 * The account, locked until the transaction ends: decisions on its balance are made on a value no
 * one else can change meanwhile, so concurrent debits serialize and never overdraw.
 */
export async function lockAccount(tx: Tx, id: string): Promise<Account | undefined> {
  return (await lockAccounts(tx, [id]))[0];
}

export interface Movement {
  accountId: string;
  kind: JournalKind;
  /** Positive; the journal stores DEBIT as negative. */
  amountMinor: bigint;
  balanceAfterMinor: bigint;
  transferId?: string;
  depositId?: string;
}

/**
 * One movement: the journal row and the new balance, in the caller's transaction. The balance
 * update is conditional on the balance the decision was made on, so a decision on a stale value
 * fails loudly instead of writing a wrong balance (the row lock makes this unreachable).
 */
export async function applyMovement(tx: Tx, movement: Movement): Promise<void> {
  const signedMinor = movement.kind === "DEBIT" ? -movement.amountMinor : movement.amountMinor;
  const updated = await tx.$executeRaw`UPDATE account SET balance_minor = balance_minor + ${signedMinor}, updated_at = now()
      WHERE id = ${movement.accountId}::uuid AND balance_minor + ${signedMinor} = ${movement.balanceAfterMinor}`;
  if (updated !== 1) throw new Error(`balance of ${movement.accountId} changed under a held lock`);
  await tx.journalEntry.create({
    data: {
      accountId: movement.accountId,
      kind: movement.kind,
      transferId: movement.transferId ?? null,
      depositId: movement.depositId ?? null,
      amountMinor: signedMinor,
      balanceAfterMinor: movement.balanceAfterMinor,
    },
  });
}

/**
 * Serializes every saga step of these transfers (credit and refund touch different accounts, yet
 * must not both happen): transaction-scoped advisory locks, taken in one order by everyone (sorted
 * ids, before any account lock) so two batches cannot deadlock. Released at commit or rollback.
 * With `recording`, the events are recorded as processed by that consumer in the same statement,
 * after the locks (lockKeysRecordingProcessed), and the ids that were new are returned.
 */
export function lockTransfers(
  tx: SqlExecutor,
  transferIds: readonly string[],
  recording?: ProcessedRecording,
): Promise<Set<string> | undefined> {
  return lockKeysRecordingProcessed(
    tx,
    transferIds.map((id) => `transfer:${id}`),
    recording,
  );
}

/** Accounts locked until the transaction ends, in id order (concurrent batches lock alike); unknown ids are absent. */
export async function lockAccounts(tx: SqlExecutor, ids: readonly string[]): Promise<Account[]> {
  const valid = [...new Set(ids)].filter(isUuid);
  if (valid.length === 0) return [];
  const rows = await tx.$queryRawUnsafe<
    Array<{
      id: string;
      user_id: string;
      type: AccountType;
      currency: string;
      status: AccountStatus;
      status_reason: string | null;
      balance_minor: bigint;
      number_last4: string;
      created_at: Date;
    }>
  >(
    `SELECT id::text AS id, user_id, type::text AS type, currency, status::text AS status, status_reason, balance_minor, number_last4, created_at
       FROM account WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`,
    valid,
  );
  return rows.map((row) => ({
    id: row.id,
    userId: row.user_id,
    type: row.type,
    currency: row.currency,
    status: row.status,
    statusReason: row.status_reason,
    balanceMinor: BigInt(row.balance_minor),
    numberLast4: row.number_last4,
    createdAt: row.created_at,
  }));
}

/** Which accounts a batch locks with its records (loadSagaRecords). */
export interface AccountsToLock {
  /** These accounts (ids that are not UUIDs name no account and are left out). */
  ids?: readonly string[];
  /** And the destination of each of these transfers' applied debits (the accounts a passed verdict credits). */
  debitDestinations?: boolean;
}

interface SagaRecordRow {
  source: "D" | "J" | "A";
  transfer_id: string | null;
  step: SagaStep | null;
  account_id: string;
  amount_minor: bigint | null;
  rejection: string | null;
  to_account_id: string | null;
  currency: string | null;
  user_id: string | null;
  type: AccountType | null;
  status: AccountStatus | null;
  status_reason: string | null;
  balance_minor: bigint | null;
  number_last4: string | null;
  created_at: Date | null;
}

/**
 * The decisions and journal rows of these transfers, and their accounts locked until the
 * transaction ends, in one round trip (each was one hand-off on the saga's path). The decisions and
 * journal are read under the transfers' locks (lockTransfers, taken in an earlier statement, so this
 * statement's snapshot already holds whatever their last holder committed), which every writer of
 * either takes first: nothing changes them meanwhile. The accounts are locked in id order, as
 * lockAccounts does, and `FOR UPDATE` returns each one's latest committed balance even when this
 * statement waited for another transaction's lock on it.
 */
export async function loadSagaRecords(tx: SqlExecutor, transferIds: readonly string[], lock: AccountsToLock = {}) {
  const rows = await tx.$queryRawUnsafe<SagaRecordRow[]>(
    `WITH wanted AS (
       SELECT unnest($2::uuid[]) AS id
       UNION
       SELECT d.to_account_id::uuid FROM saga_decision d
        WHERE $3::boolean AND d.transfer_id = ANY($1::text[]) AND d.step = 'DEBIT' AND d.rejection IS NULL
          AND d.to_account_id ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
     ), locked AS MATERIALIZED (
       SELECT a.id::text AS id, a.user_id, a.type::text AS type, a.currency, a.status::text AS status, a.status_reason,
              a.balance_minor, a.number_last4, a.created_at
         FROM account a WHERE a.id IN (SELECT id FROM wanted) ORDER BY a.id FOR UPDATE
     )
     SELECT 'D' AS source, transfer_id, step::text AS step, account_id, amount_minor, rejection, to_account_id, NULL::text AS currency,
            NULL::text AS user_id, NULL::text AS type, NULL::text AS status, NULL::text AS status_reason, NULL::bigint AS balance_minor,
            NULL::text AS number_last4, NULL::timestamptz AS created_at
       FROM saga_decision WHERE transfer_id = ANY($1::text[])
     UNION ALL
     SELECT 'J', j.transfer_id, j.kind::text, j.account_id::text, j.amount_minor, NULL, NULL, a.currency, NULL, NULL, NULL, NULL, NULL, NULL, NULL
       FROM journal_entry j JOIN account a ON a.id = j.account_id
      WHERE j.transfer_id = ANY($1::text[]) AND j.kind <> 'DEPOSIT'
     UNION ALL
     SELECT 'A', NULL, NULL, id, NULL, NULL, NULL, currency, user_id, type, status, status_reason, balance_minor, number_last4, created_at
       FROM locked`,
    [...new Set(transferIds)],
    [...new Set(lock.ids ?? [])].filter(isUuid),
    lock.debitDestinations ?? false,
  );
  const decisions: Array<SagaDecisionRecord & { transferId: string; step: SagaStep }> = [];
  const journal: TransferJournalRow[] = [];
  const accounts: Account[] = [];
  for (const row of rows) {
    if (row.source === "A") accounts.push(lockedAccountOf(row));
    else if (row.source === "D")
      decisions.push({
        transferId: row.transfer_id!,
        step: row.step!,
        accountId: row.account_id,
        amountMinor: BigInt(row.amount_minor!),
        rejection: row.rejection,
        toAccountId: row.to_account_id,
      });
    else
      journal.push({
        transferId: row.transfer_id!,
        kind: row.step!,
        accountId: row.account_id,
        amountMinor: BigInt(row.amount_minor!),
        currency: row.currency!,
      });
  }
  return { decisions, journal, accounts };
}

function lockedAccountOf(row: SagaRecordRow): Account {
  return {
    id: row.account_id,
    userId: row.user_id!,
    type: row.type!,
    currency: row.currency!,
    status: row.status!,
    statusReason: row.status_reason,
    balanceMinor: BigInt(row.balance_minor!),
    numberLast4: row.number_last4!,
    createdAt: row.created_at!,
  };
}

/**
 * Writes what a batch of saga steps decided, and the answers it emitted, in one statement: each
 * touched balance (conditional on the value the decisions were made on — the row locks make a
 * mismatch unreachable, so one fails loudly), the journal rows in decision order, the decisions,
 * and the outbox rows of the answers emitted so far (takeBufferedEvents). One round trip, where four
 * were one hand-off each on the saga's path.
 */
export async function writeSagaChanges(tx: SqlExecutor, changes: ReturnType<SagaBook["changes"]>): Promise<void> {
  const { balances, movements, decisions } = changes;
  const events = takeBufferedEvents(tx);
  if (balances.length === 0 && movements.length === 0 && decisions.length === 0 && events.length === 0) return;
  const [row] = await tx.$queryRawUnsafe<Array<{ updated: number }>>(
    `WITH balances AS (
       UPDATE account AS a SET balance_minor = v.after_minor::bigint, updated_at = now()
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS v(id, before_minor, after_minor)
        WHERE a.id = v.id AND a.balance_minor = v.before_minor::bigint
       RETURNING 1
     ), journal AS (
       INSERT INTO journal_entry (account_id, kind, transfer_id, amount_minor, balance_after_minor)
       SELECT account_id, kind::"JournalKind", transfer_id, amount_minor::bigint, balance_after_minor::bigint
         FROM unnest($4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY
           AS m(account_id, kind, transfer_id, amount_minor, balance_after_minor, n)
        ORDER BY m.n
     ), decisions AS (
       INSERT INTO saga_decision (transfer_id, step, account_id, amount_minor, rejection, to_account_id)
       SELECT transfer_id, step::"SagaStep", account_id, amount_minor::bigint, rejection, to_account_id
         FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
           AS d(transfer_id, step, account_id, amount_minor, rejection, to_account_id)
     ), ${outboxRowsCte(15)}
     SELECT (SELECT count(*) FROM balances)::int AS updated`,
    balances.map((balance) => balance.accountId),
    balances.map((balance) => balance.beforeMinor.toString()),
    balances.map((balance) => balance.afterMinor.toString()),
    // Journal rows in the order the steps were decided in: seq follows it (WITH ORDINALITY).
    movements.map((movement) => movement.accountId),
    movements.map((movement) => movement.kind),
    movements.map((movement) => movement.transferId),
    movements.map((movement) => movement.amountMinor.toString()),
    movements.map((movement) => movement.balanceAfterMinor.toString()),
    decisions.map((decision) => decision.transferId),
    decisions.map((decision) => decision.step),
    decisions.map((decision) => decision.accountId),
    decisions.map((decision) => decision.amountMinor.toString()),
    decisions.map((decision) => decision.rejection),
    decisions.map((decision) => decision.toAccountId),
    ...outboxRowsParameters(events),
  );
  // The statement failed whole if it threw; a balance that moved under the lock fails it here (rolled back with the transaction).
  if (row?.updated !== balances.length)
    throw new Error(`balances of ${balances.length - (row?.updated ?? 0)} account(s) changed under a held lock`);
}

export interface DepositRecord {
  id: string;
  accountId: string;
  amountMinor: bigint;
}

export async function findDepositByKey(db: Db | Tx, idempotencyKey: string): Promise<DepositRecord | undefined> {
  const row = await db.deposit.findUnique({ where: { idempotencyKey }, select: { id: true, accountId: true, amountMinor: true } });
  return row ?? undefined;
}

export async function insertDeposit(tx: Tx, deposit: DepositRecord & { idempotencyKey: string; requestedBy: string }): Promise<void> {
  await tx.deposit.create({ data: deposit });
}

/** The invariant, checked: an account's balance is the sum of its journal. */
export async function journalSum(db: Db | Tx, accountId: string): Promise<bigint> {
  const result = await db.journalEntry.aggregate({ where: { accountId }, _sum: { amountMinor: true } });
  return result._sum.amountMinor ?? 0n;
}

export interface SealedNumber {
  id: string;
  numberEncrypted: string;
}

/** A batch of numbers sealed with another key than `activeKeyId`, locked and skipped by concurrent runs. */
export async function lockNumbersToReencrypt(tx: Tx, activeKeyId: string, batchSize: number): Promise<SealedNumber[]> {
  return tx.$queryRaw<SealedNumber[]>`SELECT id::text AS id, number_encrypted AS "numberEncrypted" FROM account
      WHERE number_key_id <> ${activeKeyId} ORDER BY id LIMIT ${batchSize} FOR UPDATE SKIP LOCKED`;
}

export async function updateSealedNumber(tx: Tx, id: string, numberEncrypted: string, numberKeyId: string): Promise<void> {
  await tx.account.update({ where: { id }, data: { numberEncrypted, numberKeyId }, select: { id: true } });
}

/** Freezes, closes or re-activates an account (operations; no public mutation yet). */
export async function setAccountStatus(db: Db | Tx, id: string, status: AccountStatus, reason: string | null): Promise<void> {
  await db.account.update({ where: { id }, data: { status, statusReason: reason }, select: { id: true } });
}
