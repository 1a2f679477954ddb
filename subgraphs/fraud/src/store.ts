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
 * The facts' statement for several independent transfers at once, one row each in the order asked:
 * $1–$8 arrays, one element per transfer (user, source account, the velocity window's exclusive
 * bounds, the transfer, its calendar day, the payee), $9 the sample size, $10 the zone.
 * The day's total: its row read once (`existing`); started (seeded) from the checks when this day
 * and zone have no row yet, the sum skipped otherwise (NOT EXISTS gates it); the statement's
 * snapshot does not see its own insert, hence the day reads both. The user's lock (lockFraudKeys)
 * keeps two checks from seeding or raising it (fraud_check's trigger) at once; were the row missing
 * anyway, the old sum answers. Starting a day also drops the user's totals of days a week older (a
 * check for such a day starts it again).
 */
const FACTS_QUERY = `WITH req AS MATERIALIZED (
   SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::timestamptz[],
                        $7::timestamptz[], $8::text[])
     WITH ORDINALITY AS r(user_id, from_account_id, window_after, window_before, transfer_id, day_from, day_to, to_account_id, n)
 ),
 existing AS (
   SELECT r.n, t.count, t.amount_minor
     FROM req AS r JOIN fraud_daily_total AS t ON t.user_id = r.user_id AND t.day_from = r.day_from AND t.time_zone = $10
 ),
 pruned AS (
   DELETE FROM fraud_daily_total AS t USING req AS r
    WHERE t.user_id = r.user_id AND t.day_from < r.day_from - interval '7 days'
      AND NOT EXISTS (SELECT 1 FROM existing AS e WHERE e.n = r.n)
 ),
 seeded AS (
   INSERT INTO fraud_daily_total (user_id, day_from, time_zone, day_to, count, amount_minor)
   SELECT r.user_id, r.day_from, $10, r.day_to, sums.count, sums.amount
     FROM req AS r
    CROSS JOIN LATERAL (SELECT count(*)::int AS count, coalesce(sum(amount_minor), 0) AS amount FROM fraud_check
                         WHERE user_id = r.user_id AND passed AND initiated_at >= r.day_from AND initiated_at < r.day_to) AS sums
    WHERE NOT EXISTS (SELECT 1 FROM existing AS e WHERE e.n = r.n)
   ON CONFLICT DO NOTHING
   RETURNING user_id, day_from, count, amount_minor
 )
 SELECT
   (SELECT json_build_object('count', count(*), 'amount', coalesce(sum(amount_minor), 0)::text) FROM fraud_check
     WHERE user_id = r.user_id AND initiated_at > r.window_after AND initiated_at < r.window_before
       AND transfer_id <> r.transfer_id) AS "byUser",
   (SELECT json_build_object('count', count(*), 'amount', coalesce(sum(amount_minor), 0)::text) FROM fraud_check
     WHERE from_account_id = r.from_account_id AND initiated_at > r.window_after AND initiated_at < r.window_before
       AND transfer_id <> r.transfer_id) AS "fromAccount",
   coalesce(
     (SELECT json_build_object('count', d.count - own.count, 'amount', (d.amount_minor - own.amount)::text)
        FROM (SELECT s.count, s.amount_minor FROM seeded AS s WHERE s.user_id = r.user_id AND s.day_from = r.day_from
              UNION ALL
              SELECT e.count, e.amount_minor FROM existing AS e WHERE e.n = r.n
              LIMIT 1) AS d,
             -- The transfer's own check by its key (OFFSET 0 keeps the planner from walking the user's day instead).
             (SELECT count(*)::int AS count, coalesce(sum(c.amount_minor), 0) AS amount
                FROM (SELECT user_id, passed, initiated_at, amount_minor FROM fraud_check WHERE transfer_id = r.transfer_id OFFSET 0) AS c
               WHERE c.user_id = r.user_id AND c.passed AND c.initiated_at >= r.day_from AND c.initiated_at < r.day_to) AS own),
     (SELECT json_build_object('count', count(*), 'amount', coalesce(sum(amount_minor), 0)::text) FROM fraud_check
       WHERE user_id = r.user_id AND passed AND initiated_at >= r.day_from AND initiated_at < r.day_to AND transfer_id <> r.transfer_id)
   ) AS "sameDay",
   (SELECT coalesce(json_agg(amount_minor::text ORDER BY initiated_at DESC), '[]'::json)
      FROM (SELECT amount_minor, initiated_at FROM fraud_check WHERE user_id = r.user_id AND passed AND transfer_id <> r.transfer_id
             ORDER BY initiated_at DESC LIMIT $9) AS recent) AS recent,
   EXISTS (SELECT 1 FROM fraud_check WHERE user_id = r.user_id AND to_account_id = r.to_account_id AND passed
                                       AND transfer_id <> r.transfer_id) AS "paidBefore",
   -- A user has a handful of devices; the bound only guards against a flood of registrations.
   (SELECT coalesce(json_agg(device_id), '[]'::json)
      FROM (SELECT device_id FROM known_device WHERE user_id = r.user_id LIMIT 1000) AS d) AS devices
 FROM req AS r ORDER BY r.n`;

type FactsConfig = Pick<RulesConfig, "velocity" | "dailyLimit" | "unusualAmount">;

/**
 * What the rules read about each of several transfers, in one round trip: velocity as sums
 * PostgreSQL takes over index ranges (user or account, then initiation time: a window's worth of
 * rows); the day's passed total from fraud_daily_total, started from the day's checks the first time
 * this day and zone are read (then raised by fraud_check's trigger), so a busy sender's check no
 * longer visits every passed check of its day; recent amounts and devices bounded by LIMIT. The
 * transfer's own check is left out of every figure (it exists only when a check is read again, as
 * tests do).
 *
 * One statement, one snapshot: no transfer's facts count another's check stored later. The caller
 * passes independent transfers — no two of one user or from one account (checkWaves groups them so)
 * — whose facts cannot depend on each other's checks.
 */
export async function loadFactsOf(tx: SqlExecutor, transfers: readonly Transfer[], config: FactsConfig): Promise<Facts[]> {
  if (transfers.length === 0) return [];
  const windows = transfers.map((transfer) => velocityWindow(transfer.initiatedAt, config.velocity.windowSeconds));
  const days = transfers.map((transfer) => calendarDayRange(transfer.initiatedAt, config.dailyLimit.timeZone));
  const rows = await tx.$queryRawUnsafe<
    Array<{ byUser: TallyRow; fromAccount: TallyRow; sameDay: TallyRow; recent: string[]; paidBefore: boolean; devices: string[] }>
  >(
    FACTS_QUERY,
    transfers.map((transfer) => transfer.userId),
    transfers.map((transfer) => transfer.fromAccountId),
    windows.map((window) => window.after.toISOString()),
    windows.map((window) => window.before.toISOString()),
    transfers.map((transfer) => transfer.transferId),
    days.map((day) => day.from.toISOString()),
    days.map((day) => day.to.toISOString()),
    transfers.map((transfer) => transfer.toAccountId),
    config.unusualAmount.sampleSize,
    config.dailyLimit.timeZone,
  );
  return rows.map((row) => ({
    velocity: { user: tally(row.byUser), account: tally(row.fromAccount) },
    sameDayPassed: tally(row.sameDay),
    recentPassedAmountsMinor: row.recent.map((amount) => BigInt(amount)),
    paidPayeeBefore: row.paidBefore,
    knownDeviceIds: row.devices,
  }));
}

/** One transfer's facts (loadFactsOf). */
export async function loadFacts(tx: SqlExecutor, transfer: Transfer, config: FactsConfig): Promise<Facts> {
  const [facts] = await loadFactsOf(tx, [transfer], config);
  return facts!;
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
 * Stores checks, and in the same statement the events appended to the outbox before them
 * (takeBufferedEvents: their verdicts, announced first): one round trip for a wave of checks and
 * its answers on the saga's path. Each then reads back as storedCheckOf(check).
 */
export async function insertChecks(tx: SqlExecutor, checks: readonly NewCheck[]): Promise<void> {
  const events = takeBufferedEvents(tx);
  if (checks.length === 0 && events.length === 0) return;
  const column = <T>(value: (check: NewCheck) => T): T[] => checks.map(value);
  // A passed check also raises the day totals that hold its initiation time: the table's trigger
  // does (migration daily_total), whatever inserts the check.
  await tx.$executeRawUnsafe(
    `WITH ${outboxRowsCte(17)}
     INSERT INTO fraud_check (transfer_id, user_id, from_account_id, to_account_id, amount_minor, currency, request_device_id,
                              device_proven, session_device_id, initiated_at, risk_score, passed, reasons, evaluation,
                              request_event_id, checked_at)
     SELECT transfer_id, user_id, from_account_id, to_account_id, amount_minor, currency, request_device_id, device_proven,
            session_device_id, initiated_at, risk_score, passed,
            ARRAY(SELECT r.reason FROM jsonb_array_elements_text(c.reasons) WITH ORDINALITY AS r(reason, n) ORDER BY r.n),
            evaluation, request_event_id, checked_at
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::boolean[], $9::text[],
                   $10::timestamptz[], $11::int[], $12::boolean[], $13::jsonb[], $14::jsonb[], $15::uuid[], $16::timestamptz[])
         AS c(transfer_id, user_id, from_account_id, to_account_id, amount_minor, currency, request_device_id, device_proven,
              session_device_id, initiated_at, risk_score, passed, reasons, evaluation, request_event_id, checked_at)`,
    column((check) => check.transfer.transferId),
    column((check) => check.transfer.userId),
    column((check) => check.transfer.fromAccountId),
    column((check) => check.transfer.toAccountId),
    column((check) => check.transfer.amountMinor.toString()),
    column((check) => check.transfer.currency),
    column((check) => check.transfer.requestDeviceId),
    column((check) => check.transfer.deviceProven),
    column((check) => check.transfer.sessionDeviceId),
    // An unparseable time is stored as the check time; the verdict already failed closed on it.
    column((check) => (Number.isNaN(check.transfer.initiatedAt.getTime()) ? check.checkedAt : check.transfer.initiatedAt).toISOString()),
    column((check) => check.verdict.riskScore),
    column((check) => check.verdict.passed),
    column((check) => JSON.stringify(check.verdict.reasons)),
    column((check) => JSON.stringify(check.evaluation)),
    column((check) => check.requestEventId),
    column((check) => check.checkedAt.toISOString()),
    ...outboxRowsParameters(events),
  );
}

/** Stores one check (insertChecks). */
export function insertCheck(tx: SqlExecutor, check: NewCheck): Promise<void> {
  return insertChecks(tx, [check]);
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
