/**
 * Storage of accounts, the journal, deposits and saga decisions (Prisma). Every function that
 * changes money takes the caller's transaction, so the change, its journal row and its outbox
 * event commit together. Rows are mapped to the domain's plain types at this edge.
 */
import { isUuid } from "@vaultpay/kit";
import { Prisma } from "./generated/prisma/client.ts";
import type { Db, Tx } from "./db.ts";
import type { Account, AccountStatus, AccountType } from "./accounts.ts";
import type { TransferHistory } from "./ledger.ts";

export type JournalKind = "DEPOSIT" | "DEBIT" | "CREDIT" | "REFUND";
export type SagaStep = "DEBIT" | "CREDIT" | "REFUND";


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
  if (!isUuid(id)) return undefined;
  const rows = await tx.$queryRaw<Array<{
    id: string;
    user_id: string;
    type: AccountType;
    currency: string;
    status: AccountStatus;
    status_reason: string | null;
    balance_minor: bigint;
    number_last4: string;
    created_at: Date;
  }>>`SELECT id::text AS id, user_id, type::text AS type, currency, status::text AS status, status_reason, balance_minor, number_last4, created_at
        FROM account WHERE id = ${id}::uuid FOR UPDATE`;
  const row = rows[0];
  if (!row) return undefined;
  return {
    id: row.id,
    userId: row.user_id,
    type: row.type,
    currency: row.currency,
    status: row.status,
    statusReason: row.status_reason,
    balanceMinor: BigInt(row.balance_minor),
    numberLast4: row.number_last4,
    createdAt: row.created_at,
  };
}

/**
 * Serializes every saga step of one transfer (credit and refund touch different accounts, yet must
 * not both happen). A transaction-scoped advisory lock: released at commit or rollback.
 */
export async function lockTransfer(tx: Tx, transferId: string): Promise<void> {
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`transfer:${transferId}`}, 0))`;
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

/** What the journal says this transfer did (any account): the basis of credit and refund decisions. */
export async function transferHistory(tx: Tx, transferId: string): Promise<TransferHistory & { debitAccountId?: string }> {
  const rows = await tx.journalEntry.findMany({
    where: { transferId },
    select: { kind: true, amountMinor: true, accountId: true, account: { select: { currency: true } } },
    take: 10,
  });
  const debit = rows.find((row) => row.kind === "DEBIT");
  return {
    debit: debit ? { amountMinor: -debit.amountMinor, currency: debit.account.currency } : undefined,
    debitAccountId: debit?.accountId,
    credited: rows.some((row) => row.kind === "CREDIT"),
    refunded: rows.some((row) => row.kind === "REFUND"),
  };
}

export interface SagaDecisionRecord {
  accountId: string;
  amountMinor: bigint;
  /** Null: applied. */
  rejection: string | null;
}

export async function findSagaDecision(tx: Tx, transferId: string, step: SagaStep): Promise<SagaDecisionRecord | undefined> {
  const row = await tx.sagaDecision.findUnique({
    where: { transferId_step: { transferId, step } },
    select: { accountId: true, amountMinor: true, rejection: true },
  });
  return row ?? undefined;
}

export async function recordSagaDecision(tx: Tx, transferId: string, step: SagaStep, decision: SagaDecisionRecord): Promise<void> {
  await tx.sagaDecision.create({ data: { transferId, step, ...decision } });
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
