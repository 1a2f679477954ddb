/** TransferService.initiate on a real PostgreSQL: one transfer per idempotency key, however many requests race for it. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blindIndex } from "@vaultpay/crypto";
import { DomainError, type Caller } from "@vaultpay/kit";
import { ACCOUNT_NUMBER_CONTEXT, luhnCheckDigit } from "@vaultpay/money";
import { createTestDatabase } from "@vaultpay/testing";
import { createDb, type Db } from "./db.ts";
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
      `SELECT type FROM outbox_event WHERE payload->'data'->>'transferId' = $1 ORDER BY seq`,
      transferId,
    )) as Array<{ type: string }>;
    expect(outbox.map((row) => row.type)).toEqual(["transaction.status.changed", "transaction.initiated"]);
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
});
