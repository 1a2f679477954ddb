/**
 * The facts a check reads, on a real database through the service's SqlPool: the velocity window's
 * exclusive edges on both sides, per user and per source account; the calendar day in the zone;
 * refused, other users' and the transfer's own checks left out where the rules say; a busy
 * user's history summed, not read row by row (no bound to fail closed on); and the day's total
 * kept as a running figure per zone, equal to the checks' sum.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SqlPool } from "@vaultpay/service";
import { createTestDatabase } from "@vaultpay/testing";
import type { Transfer } from "./rules.ts";
import { insertCheck, loadFacts, recordKnownDevice } from "./store.ts";
import { rulesConfigFromEnv, transferFixture } from "./testing.ts";

const config = rulesConfigFromEnv({ FRAUD_VELOCITY_WINDOW_SECONDS: "600", FRAUD_UNUSUAL_AMOUNT_SAMPLE_SIZE: "3" });
/** 23:59 on 2026-11-25 in Kolkata (UTC+05:30). */
const late = new Date("2026-11-25T18:29:00.000Z");

describe("loadFacts", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: SqlPool;

  beforeAll(async () => {
    database = await createTestDatabase("fraud");
    sql = new SqlPool(database.url);
  });
  afterAll(async () => {
    await sql?.$disconnect();
    await database?.drop();
  });

  /** A stored check for `user` (account `acc-<user>` unless given), passed unless told. */
  async function stored(user: string, at: Date, overrides: Partial<Transfer> & { passed?: boolean } = {}): Promise<void> {
    const { passed = true, ...transfer } = overrides;
    await insertCheck(sql, {
      transfer: transferFixture({
        transferId: `t-${randomUUID()}`,
        userId: user,
        fromAccountId: `acc-${user}`,
        initiatedAt: at,
        ...transfer,
      }),
      verdict: { riskScore: passed ? 0 : 100, passed, reasons: [], customerReasons: [] },
      evaluation: { failScore: 60, failedClosed: null, facts: null, rules: [] },
      requestEventId: randomUUID(),
      checkedAt: at,
    });
  }
  const under = (user: string, at: Date, overrides: Partial<Transfer> = {}) =>
    transferFixture({ transferId: `t-${randomUUID()}`, userId: user, fromAccountId: `acc-${user}`, initiatedAt: at, ...overrides });
  const ago = (seconds: number) => new Date(late.getTime() - seconds * 1000);

  it("counts attempts less than the window away on either side, whatever their verdict, per user and per source account", async () => {
    const user = `u-${randomUUID()}`;
    const other = `u-${randomUUID()}`;
    await stored(user, ago(600), { amountMinor: 1n }); // exactly a window before: out
    await stored(user, ago(-600), { amountMinor: 2n }); // exactly a window after: out
    await stored(user, ago(599.999), { amountMinor: 100n });
    await stored(user, ago(-599), { amountMinor: 200n, passed: false }); // refused, and initiated later: still an attempt
    await stored(user, ago(0), { amountMinor: 400n });
    await stored(user, ago(30), { amountMinor: 800n, fromAccountId: `acc2-${user}` }); // the user's other account
    await stored(other, ago(10), { amountMinor: 5_000n, fromAccountId: `acc-${user}` }); // someone else from this account
    await stored(other, ago(20), { amountMinor: 9_000n }); // someone else, elsewhere
    const facts = await loadFacts(sql, under(user, late), config);
    expect(facts.velocity.user).toEqual({ count: 4, amountMinor: 1_500n });
    expect(facts.velocity.account).toEqual({ count: 4, amountMinor: 5_700n });
  });

  it("sums the user's passed transfers of the transfer's calendar day in the zone, and nothing else", async () => {
    const user = `u-${randomUUID()}`;
    await stored(user, new Date("2026-11-24T18:30:00.000Z"), { amountMinor: 600n }); // 00:00 the same Kolkata day
    await stored(user, new Date("2026-11-25T18:29:59.999Z"), { amountMinor: 50n }); // 23:59:59.999, after the transfer
    await stored(user, new Date("2026-11-24T18:29:59.999Z"), { amountMinor: 7_000n }); // the day before
    await stored(user, new Date("2026-11-25T18:30:00.000Z"), { amountMinor: 7_000n }); // the day after
    await stored(user, ago(60), { amountMinor: 7_000n, passed: false }); // refused: refunded
    await stored(`u-${randomUUID()}`, ago(60), { amountMinor: 7_000n, fromAccountId: `acc-${user}` }); // another user
    const kolkata = await loadFacts(sql, under(user, late), config);
    expect(kolkata.sameDayPassed).toEqual({ count: 2, amountMinor: 650n });
    // In UTC the transfer's day is 2026-11-25 00:00Z to 24:00Z: the rows of 18:29:59.999Z and 18:30Z on it, the 24th's not.
    const utc = rulesConfigFromEnv({ FRAUD_DAILY_LIMIT_TIME_ZONE: "UTC" });
    expect((await loadFacts(sql, under(user, late), utc)).sameDayPassed).toEqual({ count: 2, amountMinor: 7_050n });
  });

  it("leaves the transfer's own stored check out, and reads recent amounts, payees and devices", async () => {
    const user = `u-${randomUUID()}`;
    const transfer = under(user, late, { toAccountId: "payee-1" });
    await insertCheck(sql, {
      transfer,
      verdict: { riskScore: 0, passed: true, reasons: [], customerReasons: [] },
      evaluation: { failScore: 60, failedClosed: null, facts: null, rules: [] },
      requestEventId: randomUUID(),
      checkedAt: late,
    });
    const alone = await loadFacts(sql, transfer, config);
    expect(alone).toMatchObject({
      velocity: { user: { count: 0, amountMinor: 0n }, account: { count: 0, amountMinor: 0n } },
      sameDayPassed: { count: 0, amountMinor: 0n },
      recentPassedAmountsMinor: [],
      paidPayeeBefore: false,
      knownDeviceIds: [],
    });
    for (const [seconds, amountMinor] of [
      [400, 1n],
      [300, 2n],
      [200, 3n],
      [100, 4n],
    ] as const)
      await stored(user, ago(seconds), { amountMinor, toAccountId: seconds === 400 ? "payee-1" : "payee-2" });
    await stored(user, ago(50), { amountMinor: 99n, passed: false });
    await recordKnownDevice(sql, { userId: user, deviceId: "d1", deviceRecordId: randomUUID(), registeredAt: late });
    const facts = await loadFacts(sql, transfer, config);
    // Newest first, passed only, the sample size at most.
    expect(facts.recentPassedAmountsMinor).toEqual([4n, 3n, 2n]);
    expect(facts.paidPayeeBefore).toBe(true);
    expect(facts.knownDeviceIds).toEqual(["d1"]);
  });

  it("sums a user with thousands of transfers in the day (more than the old 2,000-row bound), which no longer fails closed", async () => {
    const user = `u-${randomUUID()}`;
    // 3,000 passed checks of 10 paise, one a second over the 50 minutes before the transfer.
    await sql.$executeRawUnsafe(
      `INSERT INTO fraud_check (transfer_id, user_id, from_account_id, to_account_id, amount_minor, currency, session_device_id,
                                initiated_at, risk_score, passed, reasons, evaluation, request_event_id)
       SELECT 'bulk-' || $1 || '-' || i, $1, 'acc-' || $1, 'b1', 10, 'INR', 'd1', $2::timestamptz - i * interval '1 second', 0, true,
              '{}', '{}'::jsonb, gen_random_uuid()
         FROM generate_series(1, 3000) AS i`,
      user,
      late.toISOString(),
    );
    const facts = await loadFacts(sql, under(user, late), config);
    expect(facts.sameDayPassed).toEqual({ count: 3_000, amountMinor: 30_000n });
    expect(facts.velocity.user).toEqual({ count: 599, amountMinor: 5_990n });
    // From then on the day's figure is its running total, raised by the table's trigger whatever
    // inserts a check: a row written by plain SQL (as a replica of an older version would) counts,
    // as does one stored through insertCheck.
    await sql.$executeRawUnsafe(
      `INSERT INTO fraud_check (transfer_id, user_id, from_account_id, to_account_id, amount_minor, currency, session_device_id,
                                initiated_at, risk_score, passed, reasons, evaluation, request_event_id)
       VALUES ('bulk-' || $1 || '-plain', $1, 'acc-' || $1, 'b1', 10, 'INR', 'd1', $2::timestamptz, 0, true, '{}', '{}'::jsonb, gen_random_uuid())`,
      user,
      late.toISOString(),
    );
    expect((await loadFacts(sql, under(user, late), config)).sameDayPassed).toEqual({ count: 3_001, amountMinor: 30_010n });
    await stored(user, ago(5), { amountMinor: 7n });
    expect((await loadFacts(sql, under(user, late), config)).sameDayPassed).toEqual({ count: 3_002, amountMinor: 30_017n });
    const [total] = await sql.$queryRawUnsafe<Array<{ count: number }>>(`SELECT count FROM fraud_daily_total WHERE user_id = $1`, user);
    expect(total).toEqual({ count: 3_002 });
  });

  it("keeps each zone's day total equal to the day's passed checks as they arrive after it was first read", async () => {
    const user = `u-${randomUUID()}`;
    const utc = rulesConfigFromEnv({ FRAUD_DAILY_LIMIT_TIME_ZONE: "UTC" });
    // Read in both zones before any check: both days start at zero.
    expect((await loadFacts(sql, under(user, late), config)).sameDayPassed).toEqual({ count: 0, amountMinor: 0n });
    expect((await loadFacts(sql, under(user, late), utc)).sameDayPassed).toEqual({ count: 0, amountMinor: 0n });
    // Kolkata's day: 2026-11-24T18:30Z to 2026-11-25T18:30Z. UTC's: the 25th.
    await stored(user, new Date("2026-11-24T18:30:00.000Z"), { amountMinor: 600n }); // Kolkata's only
    await stored(user, new Date("2026-11-25T18:29:59.999Z"), { amountMinor: 50n }); // both
    await stored(user, new Date("2026-11-25T18:30:00.000Z"), { amountMinor: 7_000n }); // UTC's only
    await stored(user, new Date("2026-11-25T00:00:00.000Z"), { amountMinor: 4n }); // both
    await stored(user, ago(60), { amountMinor: 9_000n, passed: false }); // refused: in neither
    await stored(user, new Date("2026-11-23T12:00:00.000Z"), { amountMinor: 80_000n }); // an earlier day: in neither
    await stored(`u-${randomUUID()}`, ago(60), { amountMinor: 70_000n }); // another user
    expect((await loadFacts(sql, under(user, late), config)).sameDayPassed).toEqual({ count: 3, amountMinor: 654n });
    expect((await loadFacts(sql, under(user, late), utc)).sameDayPassed).toEqual({ count: 3, amountMinor: 7_054n });
    // The same figures the checks sum to, kept once per zone's day.
    const totals = await sql.$queryRawUnsafe<Array<{ time_zone: string; count: number; amount_minor: bigint }>>(
      `SELECT time_zone, count, amount_minor FROM fraud_daily_total WHERE user_id = $1 AND day_from > $2::timestamptz ORDER BY time_zone`,
      user,
      "2026-11-24T00:00:00.000Z",
    );
    expect(totals).toEqual(
      [
        { time_zone: config.dailyLimit.timeZone, count: 3, amount_minor: 654n },
        { time_zone: "UTC", count: 3, amount_minor: 7_054n },
      ].sort((a, b) => (a.time_zone < b.time_zone ? -1 : 1)),
    );
    // A day a week later starts its own total and drops the user's older ones; a late check of an
    // old day starts that day again from its checks.
    const weekLater = new Date(late.getTime() + 8 * 86_400_000);
    expect((await loadFacts(sql, under(user, weekLater), config)).sameDayPassed).toEqual({ count: 0, amountMinor: 0n });
    const days = await sql.$queryRawUnsafe<Array<{ n: number }>>(
      `SELECT count(*)::int AS n FROM fraud_daily_total WHERE user_id = $1`,
      user,
    );
    expect(days).toEqual([{ n: 1 }]);
    expect((await loadFacts(sql, under(user, late), config)).sameDayPassed).toEqual({ count: 3, amountMinor: 654n });
  });
});
