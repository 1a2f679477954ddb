/** TransferService.initiate on a real PostgreSQL: one transfer per idempotency key, however many requests race for it. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blindIndex } from "@vaultpay/crypto";
import { DomainError, type Caller } from "@vaultpay/kit";
import { ACCOUNT_NUMBER_CONTEXT, luhnCheckDigit } from "@vaultpay/money";
import type { SqlExecutor } from "@vaultpay/events";
import { createTestDatabase } from "@vaultpay/testing";
import { createDb, type Db, type Tx } from "./db.ts";
import { recordAccount, TransferService } from "./service.ts";

const blindIndexKey = Buffer.alloc(32, 7);
const timings = { stepTimeoutMs: 30_000, maxStepAttempts: 3 };
const device = { id: "device-1", proven: false };

function accountNumber(payload: string): string {
  return `${payload}${luhnCheckDigit(payload)}`;
}

describe("TransferService.initiate", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  let service: TransferService;
  let commits = 0;
  const alice: Caller = { userId: randomUUID(), role: "CUSTOMER", sessionId: "s1", deviceId: "device-1", tokenId: "t1" };
  const fromAccountId = randomUUID();
  const toNumber = accountNumber("12345678901");

  beforeAll(async () => {
    database = await createTestDatabase("transactions");
    db = createDb(database.url);
    service = new TransferService(db, blindIndexKey, timings, () => commits++);
    await db.$transaction(async (tx) => {
      const numberBlindIndex = (number: string) => blindIndex({ blindIndexKey }, number, ACCOUNT_NUMBER_CONTEXT);
      await recordAccount(tx, {
        accountId: fromAccountId,
        userId: alice.userId,
        type: "SAVINGS",
        currency: "INR",
        maskedNumber: "••••0000",
        numberBlindIndex: numberBlindIndex(accountNumber("10000000000")),
      });
      await recordAccount(tx, {
        accountId: randomUUID(),
        userId: randomUUID(),
        type: "SAVINGS",
        currency: "INR",
        maskedNumber: `••••${toNumber.slice(-4)}`,
        numberBlindIndex: numberBlindIndex(toNumber),
      });
    });
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  const input = (idempotencyKey: string, amountMinor = "2500") => ({
    fromAccountId,
    toAccountNumber: toNumber,
    amountMinor,
    idempotencyKey,
  });

  it("answers every request racing with one key with the same transfer, started once", async () => {
    const idempotencyKey = `race-${randomUUID()}`;
    const commitsBefore = commits;
    // Eight at once: they all find no transfer for the key, all try to insert it, and the unique
    // constraint lets one through; the others answer with the winner, as a retry would.
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => service.initiate(alice, input(idempotencyKey), device, `corr-${i}`)),
    );
    expect(new Set(answers.map((answer) => answer.id)).size).toBe(1);
    expect(answers[0]).toMatchObject({ status: "PENDING", amountMinor: 2500n, idempotencyKey });
    const transferId = answers[0]!.id;
    expect(await db.transfer.count({ where: { userId: alice.userId, idempotencyKey } })).toBe(1);
    expect(await db.transferStatusChange.count({ where: { transferId } })).toBe(1);
    const outbox = (await db.$queryRawUnsafe(
      `SELECT type, subject FROM outbox_event WHERE payload->'data'->>'transferId' = $1 ORDER BY seq`,
      transferId,
    )) as Array<{ type: string; subject: string }>;
    expect(outbox.map((row) => row.type)).toEqual(["transaction.status.changed", "transaction.initiated"]);
    expect(outbox.map((row) => row.subject)).toEqual([`transaction.status.changed.${transferId}`, "transaction.initiated"]);
    expect(commits - commitsBefore).toBe(1);
  });

  it("refuses the key reused for a different transfer, even while the first is racing in", async () => {
    const idempotencyKey = `reuse-${randomUUID()}`;
    const [first, second] = await Promise.allSettled([
      service.initiate(alice, input(idempotencyKey, "100"), device, "corr-a"),
      service.initiate(alice, input(idempotencyKey, "200"), device, "corr-b"),
    ]);
    const outcomes = [first, second].map((outcome) =>
      outcome.status === "fulfilled" ? "OK" : outcome.reason instanceof DomainError ? outcome.reason.code : String(outcome.reason),
    );
    expect(outcomes.sort()).toEqual(["CONFLICT", "OK"]);
    expect(await db.transfer.count({ where: { userId: alice.userId, idempotencyKey } })).toBe(1);
  });

  it("takes the source account's id in upper case as the same account, both before and after its ends are cached", async () => {
    const fresh = new TransferService(db, blindIndexKey, timings, () => {});
    const shouted = fromAccountId.toUpperCase();
    const send = (key: string, from: string) => fresh.initiate(alice, { ...input(key, "400"), fromAccountId: from }, device, "corr-case");
    // Nothing cached yet: the directory is read with the id.
    const keyOne = `case-1-${randomUUID()}`;
    const first = await send(keyOne, shouted);
    expect(first).toMatchObject({ status: "PENDING", fromAccountId });
    // A retry in the other spelling is the same transfer, not a CONFLICT over its body.
    expect((await send(keyOne, fromAccountId)).id).toBe(first.id);
    // Ends cached: the cache is looked up with the id.
    const second = await send(`case-2-${randomUUID()}`, shouted);
    expect(second).toMatchObject({ status: "PENDING", fromAccountId });
    expect(await db.transfer.count({ where: { id: { in: [first.id, second.id] }, fromAccountId } })).toBe(2);
  });

  it("reads the directory once for known ends: later transfers between them are one statement, retries and misuse answered as before", async () => {
    const statements: string[] = [];
    const counting: SqlExecutor = {
      $executeRawUnsafe(query, ...values) {
        statements.push(query);
        return db.$executeRawUnsafe(query, ...values);
      },
      $queryRawUnsafe<T>(query: string, ...values: unknown[]) {
        statements.push(query);
        return db.$queryRawUnsafe<T>(query, ...values);
      },
    };
    const fresh = new TransferService(db, blindIndexKey, timings, () => {}, counting);
    const send = (who: Caller, key: string, amountMinor = "300", from = fromAccountId) =>
      fresh.initiate(who, { ...input(key, amountMinor), fromAccountId: from }, device, "corr-cache");
    const counted = async <T>(run: () => Promise<T>) => {
      statements.length = 0;
      const outcome = await run().catch((error: unknown) => (error instanceof DomainError ? error.code : error));
      return { outcome, statements: statements.length, reads: statements.filter((query) => query.includes("account_directory")).length };
    };

    const first = await counted(() => send(alice, `cache-1-${randomUUID()}`));
    expect(first).toMatchObject({ outcome: { status: "PENDING" }, statements: 2, reads: 1 });
    const keyTwo = `cache-2-${randomUUID()}`;
    const second = await counted(() => send(alice, keyTwo));
    expect(second).toMatchObject({ outcome: { status: "PENDING" }, statements: 1, reads: 0 });
    const secondId = (second.outcome as { id: string }).id;

    // A retry meets its key at the insert and gets its transfer; the key reused for another amount is refused.
    expect(await counted(() => send(alice, keyTwo))).toMatchObject({ outcome: { id: secondId }, reads: 0 });
    expect((await counted(() => send(alice, keyTwo, "301"))).outcome).toBe("CONFLICT");
    expect(await db.transfer.count({ where: { userId: alice.userId, idempotencyKey: keyTwo } })).toBe(1);

    // Someone else naming Alice's cached account reads the directory and finds nothing of theirs.
    const mallory: Caller = { ...alice, userId: randomUUID() };
    expect(await counted(() => send(mallory, `cache-3-${randomUUID()}`))).toMatchObject({ outcome: "NOT_FOUND", reads: 1 });
    // An unknown source is read, not cached as missing.
    const unknown = randomUUID();
    expect(await counted(() => send(alice, `cache-4-${randomUUID()}`, "300", unknown))).toMatchObject({ outcome: "NOT_FOUND", reads: 1 });
    expect(await counted(() => send(alice, `cache-5-${randomUUID()}`, "300", unknown))).toMatchObject({ outcome: "NOT_FOUND", reads: 1 });
    expect(await db.transfer.count({ where: { userId: mallory.userId } })).toBe(0);
  });
});

describe("TransferService: what the receiver of a transfer sees", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  let service: TransferService;
  const person = (role: Caller["role"] = "CUSTOMER"): Caller => ({
    userId: randomUUID(),
    role,
    sessionId: randomUUID(),
    deviceId: "device-1",
    tokenId: randomUUID(),
  });
  const [alice, bob, carol, admin] = [person(), person(), person(), person("ADMIN")];
  type Accounts = { savings: { id: string; number: string }; current: { id: string; number: string } };
  const accounts = new Map<Caller, Accounts>();
  /** A customer's savings and current account, in the directory as account.created puts them there. */
  const recordAccountsOf = async (tx: Tx, who: Caller, owned: Accounts) => {
    accounts.set(who, owned);
    for (const [type, account] of [["SAVINGS", owned.savings] as const, ["CURRENT", owned.current] as const]) {
      await recordAccount(tx, {
        accountId: account.id,
        userId: who.userId,
        type,
        currency: "INR",
        maskedNumber: `••••${account.number.slice(-4)}`,
        numberBlindIndex: blindIndex({ blindIndexKey }, account.number, ACCOUNT_NUMBER_CONTEXT),
      });
    }
  };

  beforeAll(async () => {
    database = await createTestDatabase("transactions");
    db = createDb(database.url);
    service = new TransferService(db, blindIndexKey, timings, () => {});
    let serial = 20_000_000_000;
    await db.$transaction(async (tx) => {
      for (const who of [alice, bob, carol]) {
        const [savings, current] = [accountNumber(String(serial++)), accountNumber(String(serial++))].map((number) => ({
          id: randomUUID(),
          number,
        }));
        await recordAccountsOf(tx, who, { savings: savings!, current: current! });
      }
    });
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  /** A transfer from one customer's savings to another's, moved straight to `status` (the saga is tested elsewhere). */
  async function send(from: Caller, to: Caller, status: "PENDING" | "COMPLETED" | "FAILED", failureReason: string | null = null) {
    const started = await service.initiate(
      from,
      {
        fromAccountId: accounts.get(from)!.savings.id,
        toAccountNumber: accounts.get(to)!.savings.number,
        amountMinor: "700",
        idempotencyKey: randomUUID(),
      },
      device,
      "corr-receiver",
    );
    if (status !== "PENDING") {
      await db.transfer.update({ where: { id: started.id }, data: { status, step: "NONE", stepDeadlineAt: null, failureReason } });
      await db.transferStatusChange.create({ data: { transferId: started.id, status, reason: failureReason } });
    }
    return started.id;
  }

  const ids = async (who: Caller, directions?: Array<"SENT" | "RECEIVED">, first = 20) =>
    (await service.listMine(who, first, null, directions)).edges.map((edge) => edge.node.id);
  const notFound = (promise: Promise<unknown>) => expect(promise).rejects.toMatchObject({ code: "NOT_FOUND" });

  it("records who receives and the source's masked number at initiate", async () => {
    const id = await send(alice, bob, "PENDING");
    const row = await db.transfer.findUniqueOrThrow({ where: { id } });
    expect(row).toMatchObject({ toUserId: bob.userId, fromMaskedNumber: `••••${accounts.get(alice)!.savings.number.slice(-4)}` });
  });

  it("lists and shows the receiver only COMPLETED incoming transfers, without any failure reason", async () => {
    const pending = await send(alice, bob, "PENDING");
    const failed = await send(alice, bob, "FAILED", "Fraud rules: amount far above this customer's usual");
    // A completed transfer whose row holds a reason (none does today): the receiver still reads none.
    const completed = await send(alice, bob, "COMPLETED", "reason only the sender may read");

    expect(await ids(bob, ["RECEIVED"])).toEqual([completed]);
    const [received] = (await service.listMine(bob, 20, null, ["RECEIVED"])).edges.map((edge) => edge.node);
    expect(received).toMatchObject({ direction: "RECEIVED", failureReason: null, amountMinor: 700n });
    expect(received!.fromMaskedNumber).toBe(`••••${accounts.get(alice)!.savings.number.slice(-4)}`);
    expect(await service.get(bob, completed)).toMatchObject({ id: completed, direction: "RECEIVED", failureReason: null });
    await notFound(service.get(bob, pending));
    await notFound(service.get(bob, failed));

    // The sender sees all three, as sent, with their reasons.
    expect(await service.get(alice, failed)).toMatchObject({ direction: "SENT", failureReason: expect.stringContaining("Fraud rules") });
    expect(await service.get(alice, completed)).toMatchObject({ direction: "SENT", failureReason: "reason only the sender may read" });
    expect(await ids(alice, ["SENT"])).toEqual(expect.arrayContaining([pending, failed, completed]));
    expect(await ids(alice, ["RECEIVED"])).not.toEqual(expect.arrayContaining([completed]));
    // An ADMIN reads it as neither's, reasons and all.
    expect(await service.get(admin, failed)).toMatchObject({ direction: null, failureReason: expect.stringContaining("Fraud rules") });
  });

  it("shows a third customer nothing of a transfer between two others", async () => {
    const completed = await send(alice, bob, "COMPLETED");
    await notFound(service.get(carol, completed));
    expect(await ids(carol, ["SENT", "RECEIVED"])).toEqual([]);
  });

  it("lists only sent transfers by default, as before received ones were listed", async () => {
    const incoming = await send(carol, alice, "COMPLETED");
    expect(await ids(alice)).not.toContain(incoming);
    expect(await ids(alice, ["RECEIVED"])).toContain(incoming);
    await expect(service.listMine(alice, 20, null, [])).rejects.toMatchObject({ code: "BAD_USER_INPUT" });
  });

  it("pages through both directions merged newest first, a transfer to one's own account listed once", async () => {
    const dave = person();
    const daveAccounts = {
      savings: { id: randomUUID(), number: accountNumber("30000000000") },
      current: { id: randomUUID(), number: accountNumber("30000000001") },
    };
    await db.$transaction((tx) => recordAccountsOf(tx, dave, daveAccounts));
    const order = [
      await send(dave, carol, "COMPLETED"),
      await send(carol, dave, "COMPLETED"),
      await send(carol, dave, "FAILED", "not dave's business"),
      await send(dave, alice, "PENDING"),
    ];
    const own = await service.initiate(
      dave,
      {
        fromAccountId: daveAccounts.savings.id,
        toAccountNumber: daveAccounts.current.number,
        amountMinor: "5",
        idempotencyKey: randomUUID(),
      },
      device,
      "corr-own",
    );
    await db.transfer.update({ where: { id: own.id }, data: { status: "COMPLETED", step: "NONE", stepDeadlineAt: null } });

    const seen: Array<{ id: string; direction: string | null }> = [];
    let after: string | null = null;
    for (let page = 0; page < 10; page++) {
      const result: Awaited<ReturnType<TransferService["listMine"]>> = await service.listMine(dave, 2, after, ["SENT", "RECEIVED"]);
      seen.push(...result.edges.map((edge) => ({ id: edge.node.id, direction: edge.node.direction })));
      if (!result.pageInfo.hasNextPage) break;
      after = result.pageInfo.endCursor;
    }
    expect(seen).toEqual([
      { id: own.id, direction: "SENT" },
      { id: order[3], direction: "SENT" },
      { id: order[1], direction: "RECEIVED" },
      { id: order[0], direction: "SENT" },
    ]);
  });
});
