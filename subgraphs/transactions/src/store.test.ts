/**
 * BatchSagaStore on a migrated database: a batch sees its own updates, and writes them once at the
 * end. And the migration that added receivers, on a database holding transfers from before it.
 */
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { createEvent, withBufferedOutbox, type Event, type EventData, type EventType, type SqlExecutor } from "@vaultpay/events";
import { SqlPool } from "@vaultpay/service";
import { createTestDatabase } from "@vaultpay/testing";
import { createDb, type Db } from "./db.ts";
import { Saga } from "./saga.ts";
import { BatchSagaStore, findHistories, findTransferWithHistory } from "./store.ts";

const context = { correlationId: "corr-batch", actor: {} };

describe("BatchSagaStore", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let sql: pg.Client;
  let db: Db;

  beforeAll(async () => {
    database = await createTestDatabase("transactions");
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    db = createDb(database.url);
  });
  afterAll(async () => {
    await db?.$disconnect();
    await sql?.end();
    await database?.drop();
  });

  async function pendingTransfer(): Promise<string> {
    const id = randomUUID();
    await sql.query(
      `INSERT INTO transfer (id, user_id, from_account_id, from_masked_number, to_account_id, to_user_id, to_masked_number, amount_minor, currency, status, idempotency_key, request_hash,
                             session_device_id, correlation_id, step, step_attempts, step_deadline_at)
       VALUES ($1::uuid, 'user-1', 'acc-from', '••••5678', 'acc-to', 'user-2', '••••1234', 500, 'INR', 'PENDING', $1::text, 'hash', 'device-1', 'corr-batch', 'DEBIT', 1, now() + interval '1 minute')`,
      [id],
    );
    await sql.query(`INSERT INTO transfer_status_change (transfer_id, status) VALUES ($1, 'PENDING')`, [id]);
    return id;
  }

  const event = <T extends EventType>(type: T, data: EventData<T>) => createEvent(type, data, context);

  it("lets a later event of the batch see an earlier one's update, and records each status once, in order", async () => {
    const [debited, refused] = [await pendingTransfer(), await pendingTransfer()];
    const saga = new Saga({ stepTimeoutMs: 60_000, maxStepAttempts: 3 });
    const batch = [
      event("account.debited", { transferId: debited, accountId: "acc-from", amountMinor: "500" }),
      // A stale refusal of the same debit, later in the batch: the transfer is DEBITED by then, so it is ignored.
      event("account.debit.rejected", { transferId: debited, accountId: "acc-from", reason: "INSUFFICIENT_FUNDS" }),
      event("account.debit.rejected", { transferId: refused, accountId: "acc-from", reason: "INSUFFICIENT_FUNDS" }),
    ];
    await db.$transaction((tx) =>
      withBufferedOutbox(tx, async () => {
        const store = new BatchSagaStore(tx);
        await store.preload([debited, refused]);
        for (const sagaEvent of batch) await saga.handle(store, sagaEvent);
        // Nothing written before the flush: the batch's state lives in memory until then.
        const before = await tx.$queryRawUnsafe<Array<{ n: number }>>(`SELECT count(*)::int AS n FROM transfer_status_change`);
        expect(before[0]!.n).toBe(2);
        await store.flush();
      }),
    );
    const transfers = await sql.query(
      `SELECT id::text, status::text, step::text, failure_reason, step_deadline_at IS NULL AS no_deadline FROM transfer WHERE id = ANY($1)`,
      [[debited, refused]],
    );
    const byId = new Map(transfers.rows.map((row) => [row.id, row]));
    expect(byId.get(debited)).toMatchObject({ status: "DEBITED", step: "FRAUD", failure_reason: null, no_deadline: false });
    expect(byId.get(refused)).toMatchObject({ status: "REJECTED", step: "NONE", failure_reason: "Insufficient funds", no_deadline: true });
    const history = await sql.query(
      `SELECT transfer_id::text AS id, status::text FROM transfer_status_change WHERE transfer_id = ANY($1) ORDER BY seq`,
      [[debited, refused]],
    );
    expect(history.rows.filter((row) => row.id === debited).map((row) => row.status)).toEqual(["PENDING", "DEBITED"]);
    expect(history.rows.filter((row) => row.id === refused).map((row) => row.status)).toEqual(["PENDING", "REJECTED"]);
    const emitted = await sql.query(`SELECT type, subject FROM outbox_event WHERE payload->'data'->>'transferId' = $1 ORDER BY seq`, [
      debited,
    ]);
    expect(emitted.rows.map((row) => row.type)).toEqual(["transaction.status.changed", "fraud.check.requested"]);
    // A status change is published on its transfer's own subject, for the gateways following it.
    expect(emitted.rows.map((row) => row.subject)).toEqual([`transaction.status.changed.${debited}`, "fraud.check.requested"]);
  });

  it("reads the same values on node-postgres (the consumers' SqlPool) as on Prisma, from the same statements", async () => {
    const id = await pendingTransfer();
    const pool = new SqlPool(database.url, { max: 1 });
    try {
      const typed = `SELECT $1::int8 AS big, $2::int8[] AS bigs, $3::timestamp(3) AS ts, $3::timestamptz(3) AS tz, $4::jsonb AS doc,
                            ARRAY['a', NULL]::text[] AS texts, 7 AS small, true AS yes, NULL::text AS none, $5::uuid AS id,
                            ARRAY[$3::timestamp(3)] AS stamps, count(*) AS n`;
      const values = [2n ** 62n, [1n, -2n], new Date("2026-12-03T07:01:02.345Z"), JSON.stringify({ a: [1, "x"] }), id];
      const [viaPrisma] = await db.$queryRawUnsafe<unknown[]>(typed, ...values);
      const [viaPool] = await pool.$queryRawUnsafe<unknown[]>(typed, ...values);
      expect(viaPool).toEqual(viaPrisma);
      expect(viaPool).toMatchObject({ big: 2n ** 62n, ts: new Date("2026-12-03T07:01:02.345Z"), doc: { a: [1, "x"] }, n: 1n });

      const read = async (tx: SqlExecutor) => {
        const store = new BatchSagaStore(tx);
        await store.preload([id]);
        return store.lockTransfer(id);
      };
      const onPrisma = await db.$transaction((tx) => read(tx));
      const onPool = await pool.$transaction((tx) => read(tx));
      expect(onPool).toEqual(onPrisma);
      expect(onPool).toMatchObject({ id, amountMinor: 500n, status: "PENDING" });
    } finally {
      await pool.$disconnect();
    }
  });

  it("reads a transfer with its history in one statement: what Prisma's two queries read, on node-postgres and on Prisma", async () => {
    const id = await pendingTransfer();
    await sql.query(
      `INSERT INTO transfer_status_change (transfer_id, status, reason, changed_at) VALUES ($1, 'DEBITED', NULL, '2026-12-04T10:00:00.123Z'),
              ($1, 'FAILED', 'Fraud check failed', '2026-12-04T10:00:01.456Z')`,
      [id],
    );
    const pool = new SqlPool(database.url, { max: 1 });
    try {
      const [history] = await findHistories(db, [id]);
      const expected = {
        transfer: await db.transfer.findUniqueOrThrow({ where: { id } }),
        history: history!.map(({ status, reason, changedAt }) => ({ status, reason, changedAt })),
      };
      expect(expected.history.map((change) => change.status)).toEqual(["PENDING", "DEBITED", "FAILED"]);
      expect(expected.history[2]).toEqual({
        status: "FAILED",
        reason: "Fraud check failed",
        changedAt: new Date("2026-12-04T10:00:01.456Z"),
      });
      expect(await findTransferWithHistory(pool, id)).toEqual(expected);
      expect(await findTransferWithHistory(db, id)).toEqual(expected);
      // A transfer without changes has an empty history; an unknown one is null.
      const bare = await pendingTransfer();
      await sql.query(`DELETE FROM transfer_status_change WHERE transfer_id = $1`, [bare]);
      expect((await findTransferWithHistory(pool, bare))?.history).toEqual([]);
      expect(await findTransferWithHistory(pool, randomUUID())).toBeNull();
    } finally {
      await pool.$disconnect();
    }
  });

  it("records a batch's events as processed in the statement that locks their transfers: fresh once, then never again", async () => {
    const id = await pendingTransfer();
    const pool = new SqlPool(database.url, { max: 1 });
    try {
      const debited = event("account.debited", { transferId: id, accountId: "acc-from", amountMinor: "500" });
      const created = event("account.created", {
        accountId: randomUUID(),
        userId: "user-9",
        type: "SAVINGS",
        currency: "INR",
        maskedNumber: "••••9999",
        numberBlindIndex: "blind-9",
      });
      const record = (tx: SqlExecutor, events: Event[], ids: string[]) =>
        (async () => {
          const store = new BatchSagaStore(tx);
          const fresh = await store.preloadRecording("store-test", events, ids);
          return { fresh: [...fresh].sort(), state: await store.lockTransfer(id) };
        })();
      // The same reads as preload, locked, and both events new.
      const first = await pool.$transaction((tx) => record(tx, [debited, created], [id]));
      expect(first.fresh).toEqual([debited.id, created.id].map((eventId) => eventId.toLowerCase()).sort());
      expect(first.state).toEqual(await db.$transaction((tx) => new BatchSagaStore(tx).lockTransfer(id)));
      expect(first.state).toMatchObject({ id, amountMinor: 500n, status: "PENDING" });
      // Delivered again (with no transfer to lock, too): nothing is fresh.
      expect((await pool.$transaction((tx) => record(tx, [debited], [id]))).fresh).toEqual([]);
      expect((await pool.$transaction((tx) => record(tx, [created], []))).fresh).toEqual([]);
      // A batch that rolls back records nothing.
      const later = event("account.credited", { transferId: id, accountId: "acc-to", amountMinor: "500" });
      await expect(
        pool.$transaction(async (tx) => {
          await record(tx, [later], [id]);
          throw new Error("handler failed");
        }),
      ).rejects.toThrow("handler failed");
      expect((await pool.$transaction((tx) => record(tx, [later], [id]))).fresh).toEqual([later.id.toLowerCase()]);
      // Several transfers locked: the new ids come back once, whichever row carries them, and every transfer is read.
      const others = [await pendingTransfer(), await pendingTransfer()];
      const debits = others.map((other) => event("account.debited", { transferId: other, accountId: "acc-from", amountMinor: "500" }));
      const several = await pool.$transaction(async (tx) => {
        const store = new BatchSagaStore(tx);
        const fresh = await store.preloadRecording("store-test", [...debits, debited], [...others, id]);
        return { fresh: [...fresh].sort(), states: await Promise.all([...others, id].map((transfer) => store.lockTransfer(transfer))) };
      });
      expect(several.fresh).toEqual(debits.map((debit) => debit.id.toLowerCase()).sort());
      expect(several.states.map((state) => state?.id)).toEqual([...others, id]);
    } finally {
      await pool.$disconnect();
    }
  });
});

describe("migration incoming_transfers", () => {
  const MIGRATIONS = new URL("../../../prisma/transactions/migrations/", import.meta.url);
  const NAME = "incoming_transfers";

  it("fills the receiver and the source's masked number of transfers made before it from the directory", async () => {
    const migrated = await createTestDatabase("transactions");
    const admin = new pg.Client({ connectionString: migrated.url });
    await admin.connect();
    const scratchName = `t_before_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const scratchUrl = new URL(migrated.url);
    scratchUrl.pathname = `/${scratchName}`;
    await admin.query(`CREATE DATABASE ${scratchName}`);
    const scratch = new pg.Client({ connectionString: scratchUrl.toString() });
    try {
      await scratch.connect();
      const folders = readdirSync(MIGRATIONS, { withFileTypes: true })
        .filter((entry) => entry.isDirectory())
        .map((entry) => entry.name)
        .sort();
      const at = folders.findIndex((folder) => folder.endsWith(`_${NAME}`));
      expect(at).toBeGreaterThan(0);
      const apply = (folder: string) => scratch.query(readFileSync(new URL(`${folder}/migration.sql`, MIGRATIONS), "utf8"));
      for (const folder of folders.slice(0, at)) await apply(folder);

      await scratch.query(
        `INSERT INTO account_directory (account_id, user_id, currency, masked_number, number_blind_index)
         VALUES ('acc-from', 'sender', 'INR', '••••1111', 'bi-from'), ('acc-to', 'receiver', 'INR', '••••2222', 'bi-to')`,
      );
      await scratch.query(
        `INSERT INTO transfer (id, user_id, from_account_id, to_account_id, to_masked_number, amount_minor, currency, status, idempotency_key,
                               request_hash, session_device_id, correlation_id, step)
         VALUES ($1::uuid, 'sender', 'acc-from', 'acc-to', '••••2222', 500, 'INR', 'COMPLETED', 'key', 'hash', 'device', 'corr', 'NONE')`,
        [randomUUID()],
      );
      await apply(folders[at]!);

      const { rows } = await scratch.query(`SELECT to_user_id, from_masked_number FROM transfer`);
      expect(rows).toEqual([{ to_user_id: "receiver", from_masked_number: "••••1111" }]);
      // Backfilled, the columns are required like every other end of a transfer.
      await expect(
        scratch.query(
          `INSERT INTO transfer (id, user_id, from_account_id, to_account_id, to_masked_number, amount_minor, currency, status, idempotency_key,
                                 request_hash, session_device_id, correlation_id, step)
           VALUES ($1::uuid, 'sender', 'acc-from', 'acc-to', '••••2222', 500, 'INR', 'COMPLETED', 'key-2', 'hash', 'device', 'corr', 'NONE')`,
          [randomUUID()],
        ),
      ).rejects.toThrow(/null value in column/);
    } finally {
      await scratch.end();
      await admin.query(`DROP DATABASE IF EXISTS ${scratchName} WITH (FORCE)`);
      await admin.end();
      await migrated.drop();
    }
  });
});
