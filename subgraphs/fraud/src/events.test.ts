/**
 * Check requests handled as one batch in one transaction, on a real database: each request's facts
 * include the checks decided before it in the batch (velocity counts them), a request repeated in
 * the batch gets the stored verdict, and every request is answered.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEvent, inEventContext, type Event } from "@vaultpay/events";
import { createLogger, runWithContext } from "@vaultpay/kit";
import { createTestDatabase } from "@vaultpay/testing";
import type { SqlExecutor } from "@vaultpay/events";
import { createDb, type Db } from "./db.ts";
import { checkWaves, handleCheckRequests, type CheckDependencies } from "./events.ts";
import { recordKnownDevice } from "./store.ts";
import { rulesConfigFromEnv } from "./testing.ts";

const now = new Date("2026-11-25T12:00:00.000Z");

describe("a batch of check requests", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  const deps: CheckDependencies = {
    // At most two transfers in the window; a third fails on velocity alone.
    rules: rulesConfigFromEnv({ FRAUD_VELOCITY_MAX_TRANSFERS: "2", FRAUD_VELOCITY_WEIGHT: "100" }),
    logger: createLogger({ service: "fraud-batch-test", level: "silent" }),
    now: () => now,
  };

  beforeAll(async () => {
    database = await createTestDatabase("fraud");
    db = createDb(database.url);
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  const request = (transferId: string, userId: string, secondsBefore: number): Event =>
    runWithContext({ correlationId: `corr-${transferId}`, actor: {} }, () =>
      createEvent("fraud.check.requested", {
        transferId,
        userId,
        fromAccountId: `acc-${userId}`,
        toAccountId: "payee-1",
        amountMinor: "1000",
        currency: "INR",
        requestDeviceId: "d1",
        deviceProven: true,
        sessionDeviceId: "d1",
        initiatedAt: new Date(now.getTime() - secondsBefore * 1000).toISOString(),
      }),
    );

  it("counts the checks decided earlier in the batch, answers a repeated request with the stored verdict, and answers every request", async () => {
    const user = `u-${randomUUID()}`;
    const other = `u-${randomUUID()}`;
    await db.$transaction(async (tx) => {
      for (const userId of [user, other])
        await recordKnownDevice(tx, { userId, deviceId: "d1", deviceRecordId: randomUUID(), registeredAt: now });
    });
    const ids = ["t1", "t2", "t3"].map((name) => `${name}-${randomUUID()}`);
    const otherId = `o1-${randomUUID()}`;
    const batch = [
      request(ids[0]!, user, 30),
      request(otherId, other, 25),
      request(ids[1]!, user, 20),
      request(ids[2]!, user, 10),
      request(ids[0]!, user, 30),
    ];
    await db.$transaction((tx) => handleCheckRequests(batch, tx, deps, inEventContext));

    const checks = await db.$queryRawUnsafe<Array<{ transfer_id: string; passed: boolean }>>(
      `SELECT transfer_id, passed FROM fraud_check WHERE user_id = ANY($1) ORDER BY initiated_at`,
      [user, other],
    );
    // One check per transfer: the repeated request stored nothing.
    expect(checks.map((check) => [check.transfer_id, check.passed])).toEqual([
      [ids[0], true],
      [otherId, true],
      [ids[1], true],
      // The third of the user's transfers in the window, decided in the same transaction as the first two.
      [ids[2], false],
    ]);
    const verdicts = await db.$queryRawUnsafe<Array<{ payload: { data: { transferId: string; passed: boolean }; causationId: string } }>>(
      `SELECT payload FROM outbox_event WHERE type = 'fraud.check.completed' AND payload->'data'->>'transferId' = ANY($1) ORDER BY seq`,
      [...ids, otherId],
    );
    // Every request answered, in the batch's order, each verdict caused by its own request.
    expect(verdicts.map(({ payload }) => [payload.data.transferId, payload.data.passed, payload.causationId])).toEqual(
      batch.map((event) => [
        (event.data as { transferId: string }).transferId,
        (event.data as { transferId: string }).transferId !== ids[2],
        event.id,
      ]),
    );
  });

  it("recording as the consumer: a request is fresh once, a rolled-back batch records nothing, and a repeat answers nothing", async () => {
    const user = `u-${randomUUID()}`;
    const asked = request(`r1-${randomUUID()}`, user, 5);
    const transferId = (asked.data as { transferId: string }).transferId;
    const count = async (sql: string, value: string) => (await db.$queryRawUnsafe<Array<{ n: number }>>(sql, value))[0]!.n;
    const recorded = () => count(`SELECT count(*)::int AS n FROM processed_event WHERE event_id = $1::uuid`, asked.id);
    const answered = () =>
      count(
        `SELECT count(*)::int AS n FROM outbox_event WHERE type = 'fraud.check.completed' AND payload->'data'->>'transferId' = $1`,
        transferId,
      );
    await expect(
      db.$transaction(async (tx) => {
        await handleCheckRequests([asked], tx, deps, inEventContext, "recording-test");
        throw new Error("rolled back");
      }),
    ).rejects.toThrow("rolled back");
    expect([await recorded(), await answered()]).toEqual([0, 0]);
    await db.$transaction((tx) => handleCheckRequests([asked], tx, deps, inEventContext, "recording-test"));
    expect([await recorded(), await answered()]).toEqual([1, 1]);
    // Delivered again (the ack was lost): skipped whole, the verdict not even sent again.
    await db.$transaction((tx) => handleCheckRequests([asked, asked], tx, deps, inEventContext, "recording-test"));
    expect([await recorded(), await answered()]).toEqual([1, 1]);
  });

  it("holds the daily limit across batches on the day's running total: passed checks raise it, refused ones do not", async () => {
    const daily: CheckDependencies = {
      ...deps,
      rules: rulesConfigFromEnv({ FRAUD_DAILY_LIMIT_MINOR: "2500", FRAUD_VELOCITY_MAX_TRANSFERS: "100" }),
    };
    const user = `u-${randomUUID()}`;
    await db.$transaction((tx) => recordKnownDevice(tx, { userId: user, deviceId: "d1", deviceRecordId: randomUUID(), registeredAt: now }));
    const ids = ["t1", "t2", "t3", "t4"].map((name) => `${name}-${randomUUID()}`);
    // 10.00 each: two pass (20.00), the third would make 30.00 of a 25.00 limit, and so would a fourth.
    await db.$transaction((tx) => handleCheckRequests([request(ids[0]!, user, 40), request(ids[1]!, user, 30)], tx, daily, inEventContext));
    await db.$transaction((tx) => handleCheckRequests([request(ids[2]!, user, 20)], tx, daily, inEventContext));
    await db.$transaction((tx) => handleCheckRequests([request(ids[3]!, user, 10)], tx, daily, inEventContext));
    const checks = await db.$queryRawUnsafe<Array<{ transfer_id: string; passed: boolean }>>(
      `SELECT transfer_id, passed FROM fraud_check WHERE user_id = $1 ORDER BY initiated_at`,
      user,
    );
    expect(checks.map((check) => [check.transfer_id, check.passed])).toEqual([
      [ids[0], true],
      [ids[1], true],
      [ids[2], false],
      [ids[3], false],
    ]);
    const totals = await db.$queryRawUnsafe<Array<{ count: number; amount_minor: bigint }>>(
      `SELECT count, amount_minor FROM fraud_daily_total WHERE user_id = $1`,
      user,
    );
    expect(totals).toEqual([{ count: 2, amount_minor: 2000n }]);
  });
  it("decides a batch in waves of independent requests, one facts statement and one insert each, with the verdicts of one-by-one checks", async () => {
    // Velocity counts by user and by source account: a1 and b1 share account X, c2 comes from it third.
    const scenario = () => {
      const [a, b, c] = ["a", "b", "c"].map((name) => `u-${name}-${randomUUID()}`) as [string, string, string];
      const shared = `acc-x-${randomUUID()}`;
      const sent: Array<[string, string, string]> = [
        [a, shared, "a1"],
        [b, shared, "b1"],
        [c, `acc-c-${c}`, "c1"],
        [a, `acc-a-${a}`, "a2"],
        [b, `acc-b-${b}`, "b2"],
        [c, shared, "c2"],
        [a, `acc-a-${a}`, "a3"],
      ];
      const events = sent.map(([userId, fromAccountId, name], index) => {
        const event = request(`${name}-${randomUUID()}`, userId, 50 - index * 5);
        (event.data as { fromAccountId: string }).fromAccountId = fromAccountId;
        return event;
      });
      return { users: [a, b, c], events };
    };
    const passed = async (events: readonly Event[]) => {
      const rows = await db.$queryRawUnsafe<Array<{ transfer_id: string; passed: boolean }>>(
        `SELECT transfer_id, passed FROM fraud_check WHERE transfer_id = ANY($1)`,
        events.map((event) => (event.data as { transferId: string }).transferId),
      );
      const byId = new Map(rows.map((row) => [row.transfer_id, row.passed]));
      return events.map((event) => byId.get((event.data as { transferId: string }).transferId));
    };
    const devices = (users: readonly string[]) =>
      db.$transaction(async (tx) => {
        for (const userId of users)
          await recordKnownDevice(tx, { userId, deviceId: "d1", deviceRecordId: randomUUID(), registeredAt: now });
      });

    const oneByOne = scenario();
    await devices(oneByOne.users);
    for (const event of oneByOne.events) await db.$transaction((tx) => handleCheckRequests([event], tx, deps, inEventContext));

    const batched = scenario();
    await devices(batched.users);
    const statements: string[] = [];
    await db.$transaction((tx) => {
      const counted: SqlExecutor = {
        $queryRawUnsafe: (query, ...values) => {
          statements.push(query);
          return tx.$queryRawUnsafe(query, ...values);
        },
        $executeRawUnsafe: (query, ...values) => {
          statements.push(query);
          return tx.$executeRawUnsafe(query, ...values);
        },
      };
      return handleCheckRequests(batched.events, counted, deps, inEventContext);
    });

    const expected = [true, true, true, true, true, false, false];
    expect(await passed(oneByOne.events)).toEqual(expected);
    expect(await passed(batched.events)).toEqual(expected);
    // Three waves: {a1, c1}, {b1, a2}, {b2, c2, a3}.
    expect(statements.filter((query) => query.includes("WITH req AS")).length).toBe(3);
    expect(statements.filter((query) => query.includes("INSERT INTO fraud_check")).length).toBe(3);
  });
});

describe("checkWaves", () => {
  const ask = (transferId: string, userId: string, fromAccountId: string) => ({ data: { transferId, userId, fromAccountId } });

  it("puts a request one wave after the last holding its user or its source account, and leaves out stored and repeated transfers", () => {
    const requests = [
      ask("t1", "u1", "x"),
      ask("t2", "u2", "y"),
      ask("t3", "u3", "x"),
      ask("t1", "u1", "x"),
      ask("t4", "u1", "z"),
      ask("t5", "u4", "w"),
      ask("t6", "u2", "v"),
      ask("t7", "u5", "x"),
    ];
    const waves = checkWaves(requests, new Map([["t6", {}]]));
    expect(waves.map((wave) => wave.map((request) => request.data.transferId))).toEqual([["t1", "t2", "t5"], ["t3", "t4"], ["t7"]]);
  });

  it("has no waves when every transfer is stored", () => {
    expect(checkWaves([ask("t1", "u1", "x")], new Map([["t1", {}]]))).toEqual([]);
  });
});
