/**
 * Storage of checks and known devices, in raw SQL on any SqlExecutor (the consumer's SqlPool
 * transaction, Prisma's client for the resolvers). Rows are mapped to the domain's plain types
 * here; the rules never see SQL.
 */
import {
  lockKeysRecordingProcessed,
  outboxRowsCte,
  outboxRowsParameters,
  takeBufferedEvents,
  type ProcessedRecording,
  type SqlExecutor,
} from "@vaultpay/events";
import type { Db } from "./db.ts";
import { customerReasons, type Evaluation, type Verdict } from "./fraud.ts";
import { calendarDayRange, velocityWindow, type Facts, type RulesConfig, type Tally, type Transfer } from "./rules.ts";

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
 * (replicas) each see the others and velocity or daily sums are never under-counted. With
 * `recording`, the events are recorded as processed by that consumer in the same statement, after
 * the locks (lockKeysRecordingProcessed), and the ids that were new are returned.
 */
export function lockFraudKeys(tx: SqlExecutor, keys: readonly string[], recording?: ProcessedRecording): Promise<Set<string> | undefined> {
  // Sorted by lockKeys, so every holder of several takes them in one order ("transfer:…" before "user:…").
  return lockKeysRecordingProcessed(
    tx,
    keys.map((key) => `fraud:${key}`),
    recording,
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

/** A tally as SQL returns it: the sum as text, since a bigint sum is numeric and could pass 2^53. */
interface TallyRow {
  count: number;
  amount: string;
}

const tally = (row: TallyRow): Tally => ({ count: row.count, amountMinor: BigInt(row.amount) });

/**
 * The facts' statement ($1 user, $2 source account, $3/$4 the velocity window's exclusive bounds,
 * $5 the transfer, $6/$7 its calendar day, $8 the sample size, $9 the payee, $10 the zone).
 * The day's total: its row read once (`existing`); started (seeded) from the checks when this day
 * and zone have no row yet, the sum skipped otherwise (NOT EXISTS gates it); the statement's
 * snapshot does not see its own insert, hence `day` reads both. The user's lock (lockFraudKeys)
 * keeps two checks from seeding or raising it (fraud_check's trigger) at once; were the row missing
 * anyway, the old sum answers. Starting a day also drops the user's totals of days a week older (a
 * check for such a day starts it again).
 */
const FACTS_QUERY = `WITH existing AS (
   SELECT count, amount_minor FROM fraud_daily_total WHERE user_id = $1 AND day_from = $6::timestamptz AND time_zone = $10
 ),
 pruned AS (
   DELETE FROM fraud_daily_total
    WHERE user_id = $1 AND day_from < $6::timestamptz - interval '7 days' AND NOT EXISTS (SELECT 1 FROM existing)
 ),
 seeded AS (
   INSERT INTO fraud_daily_total (user_id, day_from, time_zone, day_to, count, amount_minor)
   SELECT $1, $6::timestamptz, $10, $7::timestamptz, sums.count, sums.amount
     FROM (SELECT count(*)::int AS count, coalesce(sum(amount_minor), 0) AS amount FROM fraud_check
            WHERE user_id = $1 AND passed AND initiated_at >= $6::timestamptz AND initiated_at < $7::timestamptz) AS sums
    WHERE NOT EXISTS (SELECT 1 FROM existing)
   ON CONFLICT DO NOTHING
   RETURNING count, amount_minor
 ),
 day AS (
   SELECT count, amount_minor FROM seeded
   UNION ALL
   SELECT count, amount_minor FROM existing
 ),
 own AS (
   -- The transfer's own check by its key (OFFSET 0 keeps the planner from walking the user's day instead).
   SELECT count(*)::int AS count, coalesce(sum(c.amount_minor), 0) AS amount
     FROM (SELECT user_id, passed, initiated_at, amount_minor FROM fraud_check WHERE transfer_id = $5 OFFSET 0) AS c
    WHERE c.user_id = $1 AND c.passed AND c.initiated_at >= $6::timestamptz AND c.initiated_at < $7::timestamptz
 )
 SELECT
   (SELECT json_build_object('count', count(*), 'amount', coalesce(sum(amount_minor), 0)::text) FROM fraud_check
     WHERE user_id = $1 AND initiated_at > $3::timestamptz AND initiated_at < $4::timestamptz AND transfer_id <> $5) AS "byUser",
   (SELECT json_build_object('count', count(*), 'amount', coalesce(sum(amount_minor), 0)::text) FROM fraud_check
     WHERE from_account_id = $2 AND initiated_at > $3::timestamptz AND initiated_at < $4::timestamptz AND transfer_id <> $5) AS "fromAccount",
   coalesce(
     (SELECT json_build_object('count', d.count - own.count, 'amount', (d.amount_minor - own.amount)::text)
        FROM (SELECT count, amount_minor FROM day LIMIT 1) AS d, own),
     (SELECT json_build_object('count', count(*), 'amount', coalesce(sum(amount_minor), 0)::text) FROM fraud_check
       WHERE user_id = $1 AND passed AND initiated_at >= $6::timestamptz AND initiated_at < $7::timestamptz AND transfer_id <> $5)
   ) AS "sameDay",
   (SELECT coalesce(json_agg(amount_minor::text ORDER BY initiated_at DESC), '[]'::json)
      FROM (SELECT amount_minor, initiated_at FROM fraud_check WHERE user_id = $1 AND passed AND transfer_id <> $5
             ORDER BY initiated_at DESC LIMIT $8) AS r) AS recent,
   EXISTS (SELECT 1 FROM fraud_check WHERE user_id = $1 AND to_account_id = $9 AND passed AND transfer_id <> $5) AS "paidBefore",
   -- A user has a handful of devices; the bound only guards against a flood of registrations.
   (SELECT coalesce(json_agg(device_id), '[]'::json) FROM (SELECT device_id FROM known_device WHERE user_id = $1 LIMIT 1000) AS d) AS devices`;

/**
 * What the rules read about a transfer, in one round trip: velocity as sums PostgreSQL takes over
 * index ranges (user or account, then initiation time: a window's worth of rows); the day's passed
 * total from fraud_daily_total, started from the day's checks the first time this day and zone are
 * read (then raised by fraud_check's trigger), so a busy sender's check no longer visits every
 * passed check of its day; recent amounts and devices bounded by LIMIT. The transfer's own check is
 * left out of every figure (it exists only when a check is read again, as tests do).
 */
export async function loadFacts(
  tx: SqlExecutor,
  transfer: Transfer,
  config: Pick<RulesConfig, "velocity" | "dailyLimit" | "unusualAmount">,
): Promise<Facts> {
  const window = velocityWindow(transfer.initiatedAt, config.velocity.windowSeconds);
  const day = calendarDayRange(transfer.initiatedAt, config.dailyLimit.timeZone);
  const [row] = await tx.$queryRawUnsafe<
    Array<{ byUser: TallyRow; fromAccount: TallyRow; sameDay: TallyRow; recent: string[]; paidBefore: boolean; devices: string[] }>
  >(
    FACTS_QUERY,
    transfer.userId,
    transfer.fromAccountId,
    window.after.toISOString(),
    window.before.toISOString(),
    transfer.transferId,
    day.from.toISOString(),
    day.to.toISOString(),
    config.unusualAmount.sampleSize,
    transfer.toAccountId,
    config.dailyLimit.timeZone,
  );
  return {
    velocity: { user: tally(row!.byUser), account: tally(row!.fromAccount) },
    sameDayPassed: tally(row!.sameDay),
    recentPassedAmountsMinor: row!.recent.map((amount) => BigInt(amount)),
    paidPayeeBefore: row!.paidBefore,
    knownDeviceIds: row!.devices,
  };
}

/** What a check is about to store. */
export interface NewCheck {
  transfer: Transfer;
  verdict: Verdict;
  evaluation: Evaluation;
  requestEventId: string;
  checkedAt: Date;
}

/** A new check as it will read back once stored (insertCheck): its verdict can be announced before the insert. */
export function storedCheckOf(check: NewCheck): StoredCheck {
  const { transfer, verdict } = check;
  return toStoredCheck({
    transferId: transfer.transferId,
    userId: transfer.userId,
    riskScore: verdict.riskScore,
    passed: verdict.passed,
    reasons: verdict.reasons,
    // As it reads back from the jsonb column.
    evaluation: JSON.parse(JSON.stringify(check.evaluation)),
    checkedAt: check.checkedAt,
  });
}

/**
 * Stores a check, and in the same statement the events appended to the outbox before it
 * (takeBufferedEvents: its verdict, announced first): one round trip fewer on the saga's path. It
 * then reads back as storedCheckOf(check).
 */
export async function insertCheck(tx: SqlExecutor, check: NewCheck): Promise<void> {
  const { transfer, verdict } = check;
  // An unparseable time is stored as the check time; the verdict already failed closed on it.
  const initiatedAt = Number.isNaN(transfer.initiatedAt.getTime()) ? check.checkedAt : transfer.initiatedAt;
  // A passed check also raises the day totals that hold its initiation time: the table's trigger
  // does (migration daily_total), whatever inserts the check.
  await tx.$executeRawUnsafe(
    `WITH ${outboxRowsCte(17)}
     INSERT INTO fraud_check (transfer_id, user_id, from_account_id, to_account_id, amount_minor, currency, request_device_id,
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
    JSON.stringify(check.evaluation),
    check.requestEventId,
    check.checkedAt.toISOString(),
    ...outboxRowsParameters(takeBufferedEvents(tx)),
  );
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
