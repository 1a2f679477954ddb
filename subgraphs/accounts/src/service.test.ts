/** The accounts use cases on a real PostgreSQL: opening, visibility, audited reveals, deposits, the journal's guards. */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { decrypt, generateKeyRingEnv, keyRingFrom, keyIdOf } from "@vaultpay/crypto";
import { DomainError } from "@vaultpay/kit";
import { REPO_ROOT } from "@vaultpay/stack";
import { createTestDatabase } from "@vaultpay/testing";
import { ACCOUNT_NUMBER_CONTEXT, isValidAccountNumber, type Reader } from "./accounts.ts";
import { createDb, type Db } from "./db.ts";
import { reencryptAccountNumbers } from "./reencrypt.ts";
import { AccountsService } from "./service.ts";
import { journalSum, setAccountStatus } from "./store.ts";
import { dumpDatabase } from "./testing.ts";

const alice: Reader = { userId: "user-alice", role: "CUSTOMER" };
const bob: Reader = { userId: "user-bob", role: "CUSTOMER" };
const admin: Reader = { userId: "user-admin", role: "ADMIN" };

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error.code;
    throw error;
  }
  return "OK";
}

describe("accounts service", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  let sql: pg.Client;
  const env = generateKeyRingEnv("k1");
  let ring = keyRingFrom(env);
  let service: AccountsService;

  beforeAll(async () => {
    database = await createTestDatabase("accounts");
    db = createDb(database.url);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    service = new AccountsService({ db, ring, afterCommit: () => undefined });
  });
  afterAll(async () => {
    await sql?.end();
    await db?.$disconnect();
    await database?.drop();
  });

  const outbox = async (type: string) =>
    (
      await sql.query<{ payload: { data: Record<string, unknown>; actor: unknown } }>(
        `SELECT payload FROM outbox_event WHERE type = $1 ORDER BY seq`,
        [type],
      )
    ).rows.map((row) => row.payload.data);

  it("opens one account per type, sealed, with a Luhn number, and announces it without the number", async () => {
    const savings = await service.open(alice, "SAVINGS", "INR");
    const current = await service.open(alice, "CURRENT", "INR");
    expect(savings).toMatchObject({ userId: alice.userId, type: "SAVINGS", currency: "INR", status: "ACTIVE", balanceMinor: 0n });
    expect(await codeOf(service.open(alice, "SAVINGS", "INR"))).toBe("CONFLICT");
    expect(await codeOf(service.open(bob, "SAVINGS", "USD"))).toBe("BAD_USER_INPUT");
    expect(await codeOf(service.open(bob, "SAVINGS", "inr"))).toBe("BAD_USER_INPUT");

    const stored = (
      await sql.query(`SELECT number_encrypted, number_key_id, number_blind_index, number_last4 FROM account WHERE id = $1`, [savings.id])
    ).rows[0];
    const number = decrypt(ring, stored.number_encrypted, ACCOUNT_NUMBER_CONTEXT);
    expect(isValidAccountNumber(number)).toBe(true);
    expect(stored.number_key_id).toBe("k1");
    expect(stored.number_last4).toBe(number.slice(-4));

    const created = await outbox("account.created");
    expect(created).toHaveLength(2);
    expect(created[0]).toEqual({
      accountId: savings.id,
      userId: alice.userId,
      type: "SAVINGS",
      currency: "INR",
      maskedNumber: `XXXX${number.slice(-4)}`,
      numberBlindIndex: stored.number_blind_index,
    });
    expect(JSON.stringify(created)).not.toContain(number);
    expect(current.type).toBe("CURRENT");
  });

  it("enforces one account per type in the database even when two requests race", async () => {
    const results = await Promise.all(Array.from({ length: 5 }, () => codeOf(service.open(bob, "CURRENT", "INR"))));
    expect(results.filter((code) => code === "OK")).toHaveLength(1);
    expect(results.filter((code) => code === "CONFLICT")).toHaveLength(4);
  });

  it("shows an account to its owner and ADMINs only; anyone else gets NOT_FOUND", async () => {
    const [account] = await service.listOf(alice, alice.userId);
    expect(await codeOf(service.get(alice, account!.id))).toBe("OK");
    expect(await codeOf(service.get(admin, account!.id))).toBe("OK");
    expect(await codeOf(service.get(bob, account!.id))).toBe("NOT_FOUND");
    expect(await codeOf(service.get(bob, "not-a-uuid"))).toBe("NOT_FOUND");
    expect(await codeOf(service.get(bob, "0193a1b2-0000-7000-8000-000000000000"))).toBe("NOT_FOUND");
    expect(await codeOf(service.listOf(bob, alice.userId))).toBe("NOT_FOUND");
    expect((await service.listOf(admin, alice.userId)).map((a) => a.type)).toEqual(["SAVINGS", "CURRENT"]);
  });

  it("reveals the number to the owner or an ADMIN, auditing each read", async () => {
    const [account] = await service.listOf(alice, alice.userId);
    const number = await service.revealNumber(alice, account!);
    expect(isValidAccountNumber(number)).toBe(true);
    expect(await service.revealNumber(admin, account!)).toBe(number);
    expect(await codeOf(service.revealNumber(bob, account!))).toBe("NOT_FOUND");
    expect(await outbox("account.number.revealed")).toEqual([
      { accountId: account!.id, readerUserId: alice.userId },
      { accountId: account!.id, readerUserId: admin.userId },
    ]);
  });

  it("deposits once per idempotency key; same key and body → same result, other body → CONFLICT", async () => {
    const [account] = await service.listOf(alice, alice.userId);
    const input = { accountId: account!.id, amountMinor: 1_000n, idempotencyKey: "deposit-key-0001" };
    expect(await codeOf(service.deposit(alice, input))).toBe("FORBIDDEN");
    const first = await service.deposit(admin, input);
    const again = await service.deposit(admin, input);
    // The same account id in upper case is the same account: a retry, not a CONFLICT.
    const shouted = await service.deposit(admin, { ...input, accountId: account!.id.toUpperCase() });
    expect(first.balanceMinor).toBe(1_000n);
    expect(again.balanceMinor).toBe(1_000n);
    expect(shouted).toMatchObject({ id: account!.id, balanceMinor: 1_000n });
    // Concurrent replays of one key still deposit once.
    const raced = await Promise.all(
      Array.from({ length: 5 }, () => service.deposit(admin, { ...input, idempotencyKey: "deposit-key-0002", amountMinor: 5n })),
    );
    expect(raced.every((result) => result.id === account!.id)).toBe(true);
    expect(await codeOf(service.deposit(admin, { ...input, amountMinor: 1_001n }))).toBe("CONFLICT");
    expect(await codeOf(service.deposit(admin, { ...input, idempotencyKey: "deposit-key-0003", amountMinor: 0n }))).toBe("BAD_USER_INPUT");
    expect(await codeOf(service.deposit(admin, { ...input, idempotencyKey: "deposit-key-0003", amountMinor: -5n }))).toBe("BAD_USER_INPUT");
    expect(await codeOf(service.deposit(admin, { ...input, idempotencyKey: "deposit-key-0003", amountMinor: 10n ** 18n }))).toBe(
      "BAD_USER_INPUT",
    );
    expect(await codeOf(service.deposit(admin, { ...input, idempotencyKey: "short" }))).toBe("BAD_USER_INPUT");
    expect(
      await codeOf(
        service.deposit(admin, { ...input, accountId: "0193a1b2-0000-7000-8000-000000000000", idempotencyKey: "deposit-key-0004" }),
      ),
    ).toBe("NOT_FOUND");

    const deposited = await outbox("account.deposited");
    expect(deposited).toHaveLength(2);
    expect(deposited[0]).toMatchObject({ accountId: account!.id, amountMinor: "1000" });
    const balance = (await service.get(alice, account!.id)).balanceMinor;
    expect(balance).toBe(1_005n);
    expect(await journalSum(db, account!.id)).toBe(balance);
  });

  it("refuses deposits into a frozen account with its reason", async () => {
    const [, current] = await service.listOf(alice, alice.userId);
    await setAccountStatus(db, current!.id, "FROZEN", "KYC review");
    try {
      await service.deposit(admin, { accountId: current!.id, amountMinor: 10n, idempotencyKey: "deposit-frozen-1" });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(DomainError);
      expect((error as DomainError).code).toBe("CONFLICT");
      expect((error as DomainError).message).toContain("KYC review");
      expect((error as DomainError).details).toEqual({ reason: "ACCOUNT_NOT_ACTIVE" });
    }
    await setAccountStatus(db, current!.id, "ACTIVE", null);
  });

  it("the database refuses negative balances, journal edits and deletes", async () => {
    const [account] = await service.listOf(alice, alice.userId);
    await expect(sql.query(`UPDATE account SET balance_minor = -1 WHERE id = $1`, [account!.id])).rejects.toThrow(
      /account_balance_minor_nonnegative/,
    );
    await expect(sql.query(`UPDATE journal_entry SET amount_minor = 999999`)).rejects.toThrow(/append-only/);
    await expect(sql.query(`DELETE FROM journal_entry`)).rejects.toThrow(/append-only/);
    await expect(sql.query(`TRUNCATE journal_entry CASCADE`)).rejects.toThrow(/append-only/);
    await expect(sql.query(`UPDATE deposit SET amount_minor = 1`)).rejects.toThrow(/append-only/);
    await expect(
      sql.query(
        `INSERT INTO journal_entry (account_id, kind, transfer_id, amount_minor, balance_after_minor) VALUES ($1, 'DEBIT', 't-x', 5, 0)`,
        [account!.id],
      ),
    ).rejects.toThrow(/journal_entry_amount_sign/);
    expect(await journalSum(db, account!.id)).toBe((await service.get(alice, account!.id)).balanceMinor);
  });

  it("re-encrypts numbers sealed with an old key, in batches, idempotently", async () => {
    const before = new Map(
      await Promise.all(
        (await service.listOf(admin, alice.userId)).map(async (a) => [a.id, await service.revealNumber(admin, a)] as const),
      ),
    );
    const rotated = keyRingFrom({
      ...env,
      ENCRYPTION_KEYS: `${env.ENCRYPTION_KEYS},k2:${Buffer.alloc(32, 7).toString("base64")}`,
      ENCRYPTION_ACTIVE_KEY_ID: "k2",
    });
    const total = Number((await sql.query(`SELECT count(*)::int AS n FROM account`)).rows[0].n);
    expect(await reencryptAccountNumbers(db, rotated, { batchSize: 2 })).toEqual({ reencrypted: total });
    expect(await reencryptAccountNumbers(db, rotated, { batchSize: 2 })).toEqual({ reencrypted: 0 });
    const rows = (await sql.query(`SELECT number_encrypted, number_key_id FROM account`)).rows;
    expect(rows.every((row) => row.number_key_id === "k2" && keyIdOf(row.number_encrypted) === "k2")).toBe(true);
    ring = rotated;
    service = new AccountsService({ db, ring, afterCommit: () => undefined });
    for (const [id, number] of before) expect(await service.revealNumber(admin, await service.get(admin, id))).toBe(number);

    // The command itself, as an operator runs it: nothing left to do.
    const output = execFileSync(process.execPath, ["subgraphs/accounts/src/reencrypt.ts", "--batch-size", "10"], {
      cwd: REPO_ROOT,
      encoding: "utf8",
      env: {
        ...process.env,
        DATABASE_URL: database.url,
        ENCRYPTION_KEYS: `${env.ENCRYPTION_KEYS},k2:${Buffer.alloc(32, 7).toString("base64")}`,
        ENCRYPTION_ACTIVE_KEY_ID: "k2",
        BLIND_INDEX_KEY: env.BLIND_INDEX_KEY,
      },
    });
    expect(output).toBe("re-encrypted 0 account number(s) under key k2\n");
  });

  it("a dump of the database holds no plaintext account number", async () => {
    const numbers = await Promise.all(
      (await sql.query(`SELECT id FROM account`)).rows.map(async (row) => service.revealNumber(admin, await service.get(admin, row.id))),
    );
    expect(numbers.length).toBeGreaterThanOrEqual(3);
    const dump = await dumpDatabase(database.url);
    console.info(`database dump made with ${dump.tool}`);
    expect(dump.text).toContain("number_blind_index");
    for (const number of numbers) expect(dump.text).not.toContain(number);
  });
});
