/** BatchSagaStore on a migrated database: a batch sees its own updates, and writes them once at the end. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { createEvent, withBufferedOutbox, type EventData, type EventType } from "@vaultpay/events";
import { createTestDatabase } from "@vaultpay/testing";
import { createDb, type Db } from "./db.ts";
import { Saga } from "./saga.ts";
import { BatchSagaStore } from "./store.ts";

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
      `INSERT INTO transfer (id, user_id, from_account_id, to_account_id, to_masked_number, amount_minor, currency, status, idempotency_key, request_hash,
                             session_device_id, correlation_id, step, step_attempts, step_deadline_at)
       VALUES ($1::uuid, 'user-1', 'acc-from', 'acc-to', '••••1234', 500, 'INR', 'PENDING', $1::text, 'hash', 'device-1', 'corr-batch', 'DEBIT', 1, now() + interval '1 minute')`,
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
    const emitted = await sql.query(`SELECT type FROM outbox_event WHERE payload->'data'->>'transferId' = $1 ORDER BY seq`, [debited]);
    expect(emitted.rows.map((row) => row.type)).toEqual(["transaction.status.changed", "fraud.check.requested"]);
  });
});
