/**
 * Storage of checks and known devices (Prisma). Rows are mapped to the domain's plain types here;
 * the rules never see Prisma.
 */
import { lockKeys, type SqlExecutor } from "@vaultpay/events";
import type { Db } from "./db.ts";
import { customerReasons, lookbackRange, type Evaluation, type LoadedFacts, type Verdict } from "./fraud.ts";
import type { PastTransfer, Transfer } from "./rules.ts";

export interface StoredCheck extends Verdict {
  transferId: string;
  userId: string;
  checkedAt: Date;
}

/** A stored check as its raw reads return it (CHECK_COLUMNS). */
interface CheckRow {
  transferId: string;
  userId: string;
  riskScore: number;
  passed: boolean;
  reasons: string[];
  evaluation: unknown;
  checkedAt: Date;
}

/** The columns of a stored check, under the names of `CheckRow`: every read of checks takes these. */
const CHECK_COLUMNS = `transfer_id AS "transferId", user_id AS "userId", risk_score AS "riskScore", passed,
  coalesce(reasons, '{}') AS reasons, evaluation, checked_at AS "checkedAt"`;

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
export async function lockFraudKeys(tx: SqlExecutor, keys: readonly string[]): Promise<void> {
  // Sorted by lockKeys, so every holder of several takes them in one order ("transfer:…" before "user:…").
  await lockKeys(
    tx,
    keys.map((key) => `fraud:${key}`),
  );
}

/**
 * Many checks in one query, in the order asked (undefined where there is none). Raw, as are all
 * reads of checks: on the saga's path Prisma's query compiler cost more than the statement.
 */
export async function findChecks(db: SqlExecutor, transferIds: readonly string[]): Promise<Array<StoredCheck | undefined>> {
  const rows = await db.$queryRawUnsafe<CheckRow[]>(`SELECT ${CHECK_COLUMNS} FROM fraud_check WHERE transfer_id = ANY($1::text[])`, [
    ...transferIds,
  ]);
  const byTransfer = new Map(rows.map((row) => [row.transferId, toStoredCheck(row)]));
  return transferIds.map((id) => byTransfer.get(id));
}

/** Newest first, `limit` at most (the caller bounds it). */
export async function listChecks(db: Db, options: { onlyFailed: boolean; limit: number }): Promise<StoredCheck[]> {
  const rows = await db.$queryRawUnsafe<CheckRow[]>(
    `SELECT ${CHECK_COLUMNS} FROM fraud_check ${options.onlyFailed ? "WHERE NOT passed" : ""}
      ORDER BY checked_at DESC, transfer_id ASC LIMIT $1`,
    options.limit,
  );
  return rows.map(toStoredCheck);
}

/** What the rules read about a transfer, bounded: `historyMaxRows` nearby rows at most. One round trip. */
export async function loadFacts(
  tx: SqlExecutor,
  transfer: Transfer,
  limits: { historyMaxRows: number; sampleSize: number },
): Promise<LoadedFacts> {
  const range = lookbackRange(transfer.initiatedAt);
  // Amounts travel as text inside the JSON (a bigint would lose digits as a JSON number).
  const [row] = await tx.$queryRawUnsafe<
    Array<{
      nearby: Array<{
        transferId: string;
        userId: string;
        fromAccountId: string;
        toAccountId: string;
        amountMinor: string;
        initiatedAt: string;
        passed: boolean;
      }>;
      recent: string[];
      paid_before: boolean;
      devices: string[];
    }>
  >(
    `SELECT
       (SELECT coalesce(json_agg(json_build_object('transferId', transfer_id, 'userId', user_id, 'fromAccountId', from_account_id,
                                                   'toAccountId', to_account_id, 'amountMinor', amount_minor::text,
                                                   'initiatedAt', initiated_at, 'passed', passed) ORDER BY initiated_at DESC), '[]'::json)
          FROM (SELECT * FROM fraud_check
                 WHERE (user_id = $1 OR from_account_id = $2) AND initiated_at BETWEEN $3::timestamptz AND $4::timestamptz AND transfer_id <> $5
                 ORDER BY initiated_at DESC LIMIT $6) AS n) AS nearby,
       (SELECT coalesce(json_agg(amount_minor::text ORDER BY initiated_at DESC), '[]'::json)
          FROM (SELECT amount_minor, initiated_at FROM fraud_check WHERE user_id = $1 AND passed AND transfer_id <> $5
                 ORDER BY initiated_at DESC LIMIT $7) AS r) AS recent,
       EXISTS (SELECT 1 FROM fraud_check WHERE user_id = $1 AND to_account_id = $8 AND passed AND transfer_id <> $5) AS paid_before,
       -- A user has a handful of devices; the bound only guards against a flood of registrations.
       (SELECT coalesce(json_agg(device_id), '[]'::json) FROM (SELECT device_id FROM known_device WHERE user_id = $1 LIMIT 1000) AS d) AS devices`,
    transfer.userId,
    transfer.fromAccountId,
    range.from.toISOString(),
    range.to.toISOString(),
    transfer.transferId,
    // One more than allowed tells "exactly at the bound" from "truncated".
    limits.historyMaxRows + 1,
    limits.sampleSize,
    transfer.toAccountId,
  );
  const nearbyRows: PastTransfer[] = row!.nearby.map((past) => ({
    ...past,
    amountMinor: BigInt(past.amountMinor),
    initiatedAt: new Date(past.initiatedAt),
  }));
  return {
    nearby: nearbyRows.slice(0, limits.historyMaxRows),
    truncated: nearbyRows.length > limits.historyMaxRows,
    recentPassedAmountsMinor: row!.recent.map((amount) => BigInt(amount)),
    paidPayeeBefore: row!.paid_before,
    knownDeviceIds: row!.devices,
  };
}

export async function insertCheck(
  tx: SqlExecutor,
  check: { transfer: Transfer; verdict: Verdict; evaluation: Evaluation; requestEventId: string; checkedAt: Date },
): Promise<StoredCheck> {
  const { transfer, verdict } = check;
  // An unparseable time is stored as the check time; the verdict already failed closed on it.
  const initiatedAt = Number.isNaN(transfer.initiatedAt.getTime()) ? check.checkedAt : transfer.initiatedAt;
  const evaluation = JSON.stringify(check.evaluation);
  await tx.$executeRawUnsafe(
    `INSERT INTO fraud_check (transfer_id, user_id, from_account_id, to_account_id, amount_minor, currency, request_device_id,
                              device_proven, session_device_id, initiated_at, risk_score, passed, reasons, evaluation,
                              request_event_id, checked_at)
     VALUES ($1, $2, $3, $4, $5::bigint, $6, $7, $8, $9, $10::timestamptz, $11, $12, $13::text[], $14::jsonb, $15::uuid, $16::timestamptz)`,
    transfer.transferId,
    transfer.userId,
    transfer.fromAccountId,
    transfer.toAccountId,
    transfer.amountMinor.toString(),
    transfer.currency,
    transfer.requestDeviceId,
    transfer.deviceProven,
    transfer.sessionDeviceId,
    initiatedAt.toISOString(),
    verdict.riskScore,
    verdict.passed,
    verdict.reasons,
    evaluation,
    check.requestEventId,
    check.checkedAt.toISOString(),
  );
  return toStoredCheck({
    transferId: transfer.transferId,
    userId: transfer.userId,
    riskScore: verdict.riskScore,
    passed: verdict.passed,
    reasons: verdict.reasons,
    // As it reads back from the jsonb column.
    evaluation: JSON.parse(evaluation),
    checkedAt: check.checkedAt,
  });
}

/** Records a device auth registered; the first registration is kept when auth repeats it. */
export async function recordKnownDevice(
  tx: SqlExecutor,
  device: { userId: string; deviceId: string; deviceRecordId: string; registeredAt: Date },
): Promise<void> {
  await tx.$executeRawUnsafe(
    `INSERT INTO known_device (user_id, device_id, device_record_id, registered_at) VALUES ($1, $2, $3, $4::timestamptz)
     ON CONFLICT (user_id, device_id) DO NOTHING`,
    device.userId,
    device.deviceId,
    device.deviceRecordId,
    device.registeredAt.toISOString(),
  );
}
