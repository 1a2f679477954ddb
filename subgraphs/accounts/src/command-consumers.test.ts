/**
 * The saga commands' durables, one per command subject, over real JetStream: the upgrade from the
 * one durable on `transaction.>` leaves no command behind and applies none twice, and afterwards
 * the status changes and outcomes on transaction.* are no longer delivered to accounts.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { createEvent, eventHeaders, startEventing, type Event, type Eventing } from "@vaultpay/events";
import { generateKeyRingEnv, keyRingFrom } from "@vaultpay/crypto";
import { Lifecycle, createLogger } from "@vaultpay/kit";
import { createTestDatabase, startTestNats, waitUntil } from "@vaultpay/testing";
import { SqlPool, type SqlTransaction } from "@vaultpay/service";
import { createDb, type Db } from "./db.ts";
import { SAGA_COMMAND_CONSUMERS, SAGA_CONSUMER, handleSagaCommands, startSagaConsumers } from "./events.ts";
import { AccountsService } from "./service.ts";

const logger = createLogger({ service: "accounts-command-consumers-test", level: "silent" });
const context = { correlationId: "corr-upgrade", actor: {} };

describe("saga command durables", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  let sql: pg.Client;
  let pool: SqlPool;
  let eventing: Eventing<SqlTransaction>;
  const lifecycle = new Lifecycle(logger);

  beforeAll(async () => {
    [nats, database] = await Promise.all([startTestNats(), createTestDatabase("accounts")]);
    db = createDb(database.url);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    pool = new SqlPool(database.url);
    lifecycle.onShutdown("raw SQL pool", () => pool.$disconnect());
    eventing = await startEventing({ natsUrl: nats.url, name: "accounts-upgrade", logger, lifecycle, db: pool });
  });

  afterAll(async () => {
    await lifecycle.shutdown();
    await sql?.end();
    await db?.$disconnect();
    await Promise.all([nats?.stop(), database?.drop()]);
  });

  async function publish(event: Event): Promise<void> {
    await eventing.js.publish(event.type, JSON.stringify(event), { msgID: event.id, headers: eventHeaders(event) });
  }

  async function answers(transferId: string): Promise<string[]> {
    const rows = await sql.query<{ type: string }>(`SELECT type FROM outbox_event WHERE payload->'data'->>'transferId' = $1 ORDER BY seq`, [
      transferId,
    ]);
    return rows.rows.map((row) => row.type);
  }

  it("takes over from the durable on transaction.>: nothing left behind, nothing applied twice, status changes no longer delivered", async () => {
    const service = new AccountsService({ db, ring: keyRingFrom(generateKeyRingEnv()), afterCommit: () => undefined });
    const admin = { userId: "admin-1", role: "ADMIN" as const };
    const from = await service.open({ userId: "upgrade-user-1", role: "CUSTOMER" }, "SAVINGS", "INR");
    const to = await service.open({ userId: "upgrade-user-2", role: "CUSTOMER" }, "SAVINGS", "INR");
    await service.deposit(admin, { accountId: from.id, amountMinor: 1_000n, idempotencyKey: `deposit-${randomUUID()}` });
    const debit = (transferId: string) =>
      createEvent(
        "transaction.initiated",
        { transferId, fromAccountId: from.id, toAccountId: to.id, amountMinor: "300", currency: "INR", userId: from.userId },
        context,
      );
    const refund = (transferId: string) =>
      createEvent(
        "transaction.refund.requested",
        { transferId, fromAccountId: from.id, amountMinor: "300", reason: "fraud check failed" },
        context,
      );
    const statusChanged = (transferId: string) =>
      createEvent(
        "transaction.status.changed",
        {
          transferId,
          userId: from.userId,
          status: "DEBITED",
          previousStatus: "PENDING",
          failureReason: null,
          changedAt: new Date().toISOString(),
        },
        context,
      );

    // The earlier code's durable, as it created it.
    await eventing.jsm.consumers.add("TRANSACTIONS", {
      durable_name: SAGA_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      filter_subject: "transaction.>",
      deliver_policy: DeliverPolicy.All,
    });
    const wide = await eventing.js.consumers.get("TRANSACTIONS", SAGA_CONSUMER);
    const fetchFromWide = async (count: number) => {
      const messages = [];
      for await (const message of await wide.fetch({ max_messages: count, expires: 2_000 })) messages.push(message);
      expect(messages).toHaveLength(count);
      return messages;
    };

    // Acknowledged by the wide durable (its ack floor): never delivered again. Had they been,
    // the debit below the floor would be answered now.
    const settled = randomUUID();
    for (const event of [debit(settled), statusChanged(settled), refund(settled)]) await publish(event);
    for (const message of await fetchFromWide(3)) message.ack();
    await waitUntil(
      async () => (await eventing.jsm.consumers.info("TRANSACTIONS", SAGA_CONSUMER)).ack_floor.stream_seq === 3,
      "the ack floor",
    );

    // Applied by the earlier code (recorded under its name), not yet acknowledged when it stopped:
    // delivered again after the upgrade and recognised.
    const inFlight = randomUUID();
    const inFlightDebit = debit(inFlight);
    await publish(inFlightDebit);
    const [held] = await fetchFromWide(1);
    await pool.$transaction((tx) => handleSagaCommands([inFlightDebit], tx, logger, undefined, SAGA_CONSUMER));
    held!.nak();
    // Published before the upgrade, never seen by the earlier code: its refund must not be stranded
    // by the narrowed filter.
    await publish(refund(inFlight));

    await startSagaConsumers(eventing, logger);

    await waitUntil(async () => (await answers(inFlight)).length === 2, "the in-flight transfer's refund");
    const infos = Object.fromEntries(
      await Promise.all(
        SAGA_COMMAND_CONSUMERS.map(async ({ name }) => [name, await eventing.jsm.consumers.info("TRANSACTIONS", name)] as const),
      ),
    );
    await waitUntil(
      async () => (await eventing.jsm.consumers.info("TRANSACTIONS", SAGA_CONSUMER)).num_ack_pending === 0,
      "the in-flight debit acknowledged again",
    );
    expect(await answers(inFlight)).toEqual(["account.debited", "account.refunded"]);
    expect(await answers(settled)).toEqual([]);
    expect((await service.get(admin, from.id)).balanceMinor).toBe(1_000n);
    // The refund durable began after the wide durable's ack floor: one refund delivered, not two.
    expect(infos["accounts-refunds"]!.delivered.consumer_seq).toBe(1);
    expect(Object.values(infos).map((info) => info.config.filter_subject)).toEqual(
      SAGA_COMMAND_CONSUMERS.map((consumer) => consumer.filterSubject),
    );

    // After the upgrade a status change reaches no accounts durable; a debit still does.
    const before = (await eventing.jsm.consumers.info("TRANSACTIONS", SAGA_CONSUMER)).delivered.consumer_seq;
    const later = randomUUID();
    await publish(statusChanged(later));
    await publish(debit(later));
    await waitUntil(async () => (await answers(later)).length === 1, "the later debit");
    const after = await Promise.all(SAGA_COMMAND_CONSUMERS.map(({ name }) => eventing.jsm.consumers.info("TRANSACTIONS", name)));
    expect(after[0]!.delivered.consumer_seq).toBe(before + 1);
    expect(after.map((info) => info.num_pending)).toEqual([0, 0, 0]);
    expect(after[1]!.delivered.consumer_seq + after[2]!.delivered.consumer_seq).toBe(1);
  });
});
