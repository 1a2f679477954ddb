/** Transfer notices on a real PostgreSQL and a real SMTP server: once per (transfer, status), retried within bounds, never twice. */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createEvent } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { createTestDatabase, startTestSmtpServer, waitUntil, type TestSmtpServer } from "@vaultpay/testing";
import { createDb, type Db } from "./db.ts";
import {
  STUCK_SENDING_AFTER_SECONDS,
  TransferNoticeSender,
  recordTransferNotice,
  recordTransferNotices,
  stuckSendingNotices,
} from "./notices.ts";
import { createSmtpNotifier, routeByChannel } from "./notifiers.ts";
import { claimNotices } from "./store.ts";

const logger = createLogger({ service: "notices-test", level: "silent" });
const context = { correlationId: "corr-notices", actor: {} };
const EMAIL = "asha@example.com";

let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db;
let smtp: TestSmtpServer;
let sender: TransferNoticeSender;
let notifier: ReturnType<typeof routeByChannel>;
let close: () => void;

async function record(event: ReturnType<typeof createEvent>) {
  await db.$transaction((tx) => recordTransferNotice(event, tx, logger));
}
const completed = (transferId: string) =>
  createEvent(
    "transaction.completed",
    { transferId, fromAccountId: randomUUID(), toAccountId: randomUUID(), amountMinor: "12345", userId: randomUUID(), currency: "INR" },
    context,
  );
const state = async (transferId: string) =>
  (
    await db.$queryRawUnsafe<Array<{ state: string; attempts: number; due_later: boolean }>>(
      `SELECT state, attempts, next_attempt_at > now() AS due_later FROM transfer_notice WHERE transfer_id = $1::uuid`,
      transferId,
    )
  )[0];
const mailsAbout = (transferId: string) => smtp.received.filter((mail) => mail.text.includes(transferId));

beforeAll(async () => {
  [database, smtp] = await Promise.all([createTestDatabase("auth"), startTestSmtpServer()]);
  db = createDb(database.url);
  const email = createSmtpNotifier(
    {
      host: smtp.host,
      port: smtp.port,
      tls: "starttls",
      user: smtp.user,
      password: smtp.password,
      from: "no-reply@vaultpay.test",
      caFile: smtp.caFile,
      timeoutMs: 5_000,
      retry: { maxAttempts: 1, backoffMs: 0 },
    },
    logger,
  );
  close = () => email.close();
  notifier = routeByChannel({ email });
  sender = new TransferNoticeSender({
    db,
    notifier,
    contactOf: async () => ({ email: EMAIL, phone: null }),
    logger,
    maxAttempts: 3,
    pollMs: 60_000,
  });
});
afterAll(async () => {
  await sender?.stop();
  close?.();
  await db?.$disconnect();
  await Promise.all([database?.drop(), smtp?.stop()]);
});
beforeEach(async () => {
  smtp.failNext(0);
  // Each test starts with no notice left over: a pending one from an earlier test would be sent
  // first and take the failure a test arranges for its own.
  await db.$executeRawUnsafe(`DELETE FROM transfer_notice`);
});

describe("transfer notices", () => {
  it("records one notice per transfer and status, whatever the event ids", async () => {
    const transferId = randomUUID();
    const first = completed(transferId);
    await record(first);
    await record(first);
    await record({ ...completed(transferId), id: randomUUID() });
    await record(
      createEvent(
        "transaction.failed",
        { transferId, status: "FAILED", reason: "Fraud check failed", userId: randomUUID(), amountMinor: "12345", currency: "INR" },
        context,
      ),
    );
    const rows = await db.$queryRawUnsafe<Array<{ status: string }>>(
      `SELECT status FROM transfer_notice WHERE transfer_id = $1::uuid ORDER BY status`,
      transferId,
    );
    expect(rows.map((row) => row.status)).toEqual(["COMPLETED", "FAILED"]);
  });

  it("records a batch's notices in one go, once per transfer and status, the same event twice in it included", async () => {
    const [one, two] = [randomUUID(), randomUUID()];
    const repeated = completed(one);
    await db.$transaction((tx) =>
      recordTransferNotices([repeated, completed(two), repeated, { ...completed(one), id: randomUUID() }], tx, logger),
    );
    const rows = await db.$queryRawUnsafe<Array<{ transfer_id: string }>>(
      `SELECT transfer_id::text FROM transfer_notice WHERE transfer_id = ANY($1::uuid[]) ORDER BY transfer_id`,
      [one, two],
    );
    expect(rows.map((row) => row.transfer_id)).toEqual([one, two].sort());
  });

  it("puts a temporary refusal back with a later due time, sends it once due, and gives up on a permanent one", async () => {
    const retried = randomUUID();
    await record(completed(retried));
    smtp.failNext(1, 451);
    sender.kick();
    await waitUntil(
      async () => (await state(retried))?.attempts === 1 && (await state(retried))?.state === "PENDING",
      "the notice back to PENDING",
    );
    expect(await state(retried)).toMatchObject({ due_later: true });
    sender.kick();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(mailsAbout(retried)).toHaveLength(0); // not due yet
    await db.$executeRawUnsafe(`UPDATE transfer_notice SET next_attempt_at = now() WHERE transfer_id = $1::uuid`, retried);
    sender.kick();
    await waitUntil(async () => (await state(retried))?.state === "SENT", "the notice sent");
    expect(mailsAbout(retried).map((mail) => mail.subject)).toEqual(["Transfer of 123.45 INR completed"]);

    const refused = randomUUID();
    await record(completed(refused));
    smtp.failNext(1, 550);
    sender.kick();
    await waitUntil(async () => (await state(refused))?.state === "FAILED", "the notice given up");
    expect((await state(refused))?.attempts).toBe(1);
  });

  it("settles a round in one go: what went out SENT, a notice for an unknown user FAILED and not mailed", async () => {
    const [known, unknown] = [randomUUID(), randomUUID()];
    for (const transferId of [known, unknown]) await record(completed(transferId));
    const once = new TransferNoticeSender({
      db,
      notifier,
      contactOf: (notice) => (notice.transfer_id === unknown ? undefined : { email: EMAIL, phone: null }),
      logger,
      pollMs: 60_000,
    });
    once.kick();
    await once.stop();
    expect(await state(known)).toMatchObject({ state: "SENT" });
    expect(await state(unknown)).toMatchObject({ state: "FAILED" });
    expect(mailsAbout(known)).toHaveLength(1);
    expect(mailsAbout(unknown)).toHaveLength(0);
    const stamped = await db.$queryRawUnsafe<Array<{ transfer_id: string; sent: boolean }>>(
      `SELECT transfer_id::text, sent_at IS NOT NULL AS sent FROM transfer_notice WHERE transfer_id = ANY($1::uuid[]) ORDER BY sent DESC`,
      [known, unknown],
    );
    expect(stamped).toEqual([
      { transfer_id: known, sent: true },
      { transfer_id: unknown, sent: false },
    ]);
  });

  it("never sends a notice claimed before a crash again (at most once)", async () => {
    const claimed = randomUUID();
    await record(completed(claimed));
    await db.$executeRawUnsafe(`UPDATE transfer_notice SET state = 'SENDING', attempts = 1 WHERE transfer_id = $1::uuid`, claimed);
    sender.kick();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(mailsAbout(claimed)).toHaveLength(0);
    expect((await state(claimed))?.state).toBe("SENDING");
  });

  it("reports a notice left SENDING past the bound, and neither one being sent now nor one sent", async () => {
    const [stuck, sending, sent] = [randomUUID(), randomUUID(), randomUUID()];
    for (const transferId of [stuck, sending, sent]) await record(completed(transferId));
    const set = (transferId: string, state: string, claimedSecondsAgo: number) =>
      db.$executeRawUnsafe(
        `UPDATE transfer_notice SET state = $2, claimed_at = now() - make_interval(secs => $3) WHERE transfer_id = $1::uuid`,
        transferId,
        state,
        claimedSecondsAgo,
      );
    await set(stuck, "SENDING", STUCK_SENDING_AFTER_SECONDS + 60);
    await set(sending, "SENDING", 5);
    await set(sent, "SENT", STUCK_SENDING_AFTER_SECONDS + 60);
    expect(await stuckSendingNotices(db)).toBe(1);
    // A row claimed before claimed_at existed counts from its creation.
    await db.$executeRawUnsafe(
      `UPDATE transfer_notice SET claimed_at = NULL, created_at = now() - make_interval(secs => $2) WHERE transfer_id = $1::uuid`,
      sending,
      STUCK_SENDING_AFTER_SECONDS + 1,
    );
    expect(await stuckSendingNotices(db)).toBe(2);
  });

  it("stamps the claim, so the age of a SENDING row is the age of its send", async () => {
    const transferId = randomUUID();
    await record(completed(transferId));
    sender.kick();
    await waitUntil(async () => mailsAbout(transferId).length === 1, "the notice sent");
    const [row] = await db.$queryRawUnsafe<Array<{ claimed: boolean }>>(
      `SELECT claimed_at IS NOT NULL AND claimed_at >= created_at AS claimed FROM transfer_notice WHERE transfer_id = $1::uuid`,
      transferId,
    );
    expect(row?.claimed).toBe(true);
  });

  it("reads the customer's contact with the claim: their email and sealed phone, nothing for an unknown user", async () => {
    await sender.stop();
    const userId = randomUUID();
    await db.$executeRawUnsafe(
      `INSERT INTO "user" (id, email, password_hash, phone_encrypted, phone_blind_index, updated_at)
       VALUES ($1::uuid, $2, 'x', 'sealed-phone', 'bi', now())`,
      userId,
      `${userId}@example.com`,
    );
    const known = completed(randomUUID());
    const unknown = completed(randomUUID());
    await db.$transaction(async (tx) => {
      await recordTransferNotice({ ...known, data: { ...known.data, userId } } as typeof known, tx, logger);
      await recordTransferNotice(unknown, tx, logger);
    });
    const claimed = await claimNotices(db, 100);
    const contacts = Object.fromEntries(claimed.map((notice) => [notice.transfer_id, [notice.email, notice.phone_encrypted]]));
    expect(contacts[(known.data as { transferId: string }).transferId]).toEqual([`${userId}@example.com`, "sealed-phone"]);
    expect(contacts[(unknown.data as { transferId: string }).transferId]).toEqual([null, null]);
  });
});
