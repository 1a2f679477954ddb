/**
 * Storage of checks and known devices (Prisma). Rows are mapped to the domain's plain types here;
 * the rules never see Prisma.
 */
import type { Db, Tx } from "./db.ts";
import { customerReasons, lookbackRange, type Evaluation, type LoadedFacts, type Verdict } from "./fraud.ts";
import type { PastTransfer, Transfer } from "./rules.ts";
import type { Prisma } from "./generated/prisma/client.ts";

export interface StoredCheck extends Verdict {
  transferId: string;
  userId: string;
  checkedAt: Date;
}

const checkColumns = { transferId: true, userId: true, riskScore: true, passed: true, reasons: true, evaluation: true, checkedAt: true } as const;

type CheckRow = Prisma.FraudCheckGetPayload<{ select: typeof checkColumns }>;

/** The customer's lines are derived from the stored evaluation, so older checks get them too. */
function toStoredCheck(row: CheckRow): StoredCheck {
  const { evaluation, ...check } = row;
  return { ...check, customerReasons: customerReasons(evaluation as unknown as Evaluation) };
}

/**
 * Serializes work on one key until the transaction ends (a transaction-scoped advisory lock):
 * per transfer, so one verdict is ever computed for it; per user, so concurrent checks of one user
 * (replicas) each see the others and velocity or daily sums are never under-counted.
 */
export async function lockKey(tx: Tx, key: string): Promise<void> {
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`fraud:${key}`}, 0))`;
}

export async function findCheck(db: Db | Tx, transferId: string): Promise<StoredCheck | undefined> {
  const row = await db.fraudCheck.findUnique({ where: { transferId }, select: checkColumns });
  return row ? toStoredCheck(row) : undefined;
}

/** Many checks in one query, in the order asked (undefined where there is none). */
export async function findChecks(db: Db, transferIds: readonly string[]): Promise<Array<StoredCheck | undefined>> {
  const rows = await db.fraudCheck.findMany({ where: { transferId: { in: [...transferIds] } }, select: checkColumns });
  const byTransfer = new Map(rows.map((row) => [row.transferId, toStoredCheck(row)]));
  return transferIds.map((id) => byTransfer.get(id));
}

/** Newest first, `limit` at most (the caller bounds it). */
export async function listChecks(db: Db, options: { onlyFailed: boolean; limit: number }): Promise<StoredCheck[]> {
  const rows = await db.fraudCheck.findMany({
    where: options.onlyFailed ? { passed: false } : {},
    select: checkColumns,
    orderBy: [{ checkedAt: "desc" }, { transferId: "asc" }],
    take: options.limit,
  });
  return rows.map(toStoredCheck);
}

/** What the rules read about a transfer, bounded: `historyMaxRows` nearby rows at most. */
export async function loadFacts(tx: Tx, transfer: Transfer, limits: { historyMaxRows: number; sampleSize: number }): Promise<LoadedFacts> {
  const range = lookbackRange(transfer.initiatedAt);
  // One after another: the queries share the transaction's single connection.
  const nearbyRows = await tx.fraudCheck.findMany({
    where: {
      OR: [{ userId: transfer.userId }, { fromAccountId: transfer.fromAccountId }],
      initiatedAt: { gte: range.from, lte: range.to },
      transferId: { not: transfer.transferId },
    },
    select: { transferId: true, userId: true, fromAccountId: true, toAccountId: true, amountMinor: true, initiatedAt: true, passed: true },
    orderBy: { initiatedAt: "desc" },
    // One more than allowed tells "exactly at the bound" from "truncated".
    take: limits.historyMaxRows + 1,
  });
  const recentPassed = await tx.fraudCheck.findMany({
    where: { userId: transfer.userId, passed: true, transferId: { not: transfer.transferId } },
    select: { amountMinor: true },
    orderBy: { initiatedAt: "desc" },
    take: limits.sampleSize,
  });
  const paidBefore = await tx.fraudCheck.findFirst({
    where: { userId: transfer.userId, toAccountId: transfer.toAccountId, passed: true, transferId: { not: transfer.transferId } },
    select: { transferId: true },
  });
  // A user has a handful of devices; the bound only guards against a flood of registrations.
  const devices = await tx.knownDevice.findMany({ where: { userId: transfer.userId }, select: { deviceId: true }, take: 1_000 });
  const nearby: PastTransfer[] = nearbyRows.slice(0, limits.historyMaxRows);
  return {
    nearby,
    truncated: nearbyRows.length > limits.historyMaxRows,
    recentPassedAmountsMinor: recentPassed.map((row) => row.amountMinor),
    paidPayeeBefore: paidBefore !== null,
    knownDeviceIds: devices.map((row) => row.deviceId),
  };
}

export async function insertCheck(
  tx: Tx,
  check: { transfer: Transfer; verdict: Verdict; evaluation: Evaluation; requestEventId: string; checkedAt: Date },
): Promise<StoredCheck> {
  const { transfer, verdict } = check;
  const row = await tx.fraudCheck.create({
    data: {
      transferId: transfer.transferId,
      userId: transfer.userId,
      fromAccountId: transfer.fromAccountId,
      toAccountId: transfer.toAccountId,
      amountMinor: transfer.amountMinor,
      currency: transfer.currency,
      requestDeviceId: transfer.requestDeviceId,
      deviceProven: transfer.deviceProven,
      sessionDeviceId: transfer.sessionDeviceId,
      // An unparseable time is stored as the check time; the verdict already failed closed on it.
      initiatedAt: Number.isNaN(transfer.initiatedAt.getTime()) ? check.checkedAt : transfer.initiatedAt,
      riskScore: verdict.riskScore,
      passed: verdict.passed,
      reasons: verdict.reasons,
      evaluation: check.evaluation as unknown as Prisma.InputJsonValue,
      requestEventId: check.requestEventId,
      checkedAt: check.checkedAt,
    },
    select: checkColumns,
  });
  return toStoredCheck(row);
}

/** Records a device auth registered; the first registration is kept when auth repeats it. */
export async function recordKnownDevice(tx: Tx, device: { userId: string; deviceId: string; deviceRecordId: string; registeredAt: Date }): Promise<void> {
  await tx.knownDevice.upsert({
    where: { userId_deviceId: { userId: device.userId, deviceId: device.deviceId } },
    create: device,
    update: {},
  });
}
