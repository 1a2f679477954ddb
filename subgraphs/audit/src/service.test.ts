/**
 * The audit log against real NATS JetStream and PostgreSQL: the five consumers fill one gap-free
 * chain, a correlation id tells its story, the database refuses edits, verification finds
 * tampering, redeliveries are ignored, restarts continue, and a rebuild reproduces the log.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import {
  DEFAULT_STREAM_LIMITS,
  connectJetStream,
  createEvent,
  eventHeaders,
  startEventing,
  type Event,
  type EventData,
  type EventType,
  type JetStreamLink,
} from "@vaultpay/events";
import { createLogger, DomainError, Lifecycle, type Caller } from "@vaultpay/kit";
import { SqlPool } from "@vaultpay/service";
import { REPO_ROOT } from "@vaultpay/stack";
import { createTestDatabase, startTestNats, waitUntil } from "@vaultpay/testing";
import { AuditLog, verifyChain } from "./service.ts";
import { contentHash } from "./chain.ts";
import { createDb, type Db } from "./db.ts";
import { AUDITED_STREAMS, auditConsumerName, entryOf, startAuditConsumers } from "./events.ts";
import { rebuildAuditLog, summarizeChain } from "./rebuild.ts";
import { appendEntries, createAuditStore } from "./store.ts";

const run = promisify(execFile);
const logger = createLogger({ service: "audit-test", level: "silent" });
const admin: Caller = { userId: "admin-1", role: "ADMIN", sessionId: "s-1", deviceId: "d-1", tokenId: "j-1" };
const customer: Caller = { ...admin, userId: "user-1", role: "CUSTOMER" };

describe("audit log", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  const extraDatabases: Array<Awaited<ReturnType<typeof createTestDatabase>>> = [];
  let sql: pg.Client;
  let link: JetStreamLink;
  let db: Db;
  let log: AuditLog;
  let live: Lifecycle | undefined;

  async function startLive(): Promise<void> {
    live = new Lifecycle(logger);
    // As in the service: the consumers on node-postgres (SqlPool), beside the Prisma client.
    const pool = new SqlPool(database.url);
    live.onShutdown("raw SQL pool", () => pool.$disconnect());
    const eventing = await startEventing({ natsUrl: nats.url, name: "audit-test", logger, lifecycle: live, db: pool });
    await startAuditConsumers({ eventing });
  }

  async function stopLive(): Promise<void> {
    await live?.shutdown();
    live = undefined;
  }

  async function publish(event: Event, msgID = event.id): Promise<void> {
    await link.js.publish(event.type, JSON.stringify(event), { msgID, headers: eventHeaders(event) });
  }

  function event<T extends EventType>(type: T, data: EventData<T>, correlationId: string, userId?: string): Event<T> {
    return createEvent(type, data, { correlationId, actor: userId ? { userId } : {} });
  }

  const count = async () => (await sql.query(`SELECT count(*)::int AS n FROM audit_record`)).rows[0].n as number;
  const stored = async (eventId: string) => (await sql.query(`SELECT 1 FROM audit_record WHERE event_id = $1`, [eventId])).rowCount === 1;

  /** Every audit consumer has acknowledged everything in its stream. */
  async function drained(): Promise<void> {
    await waitUntil(async () => {
      for (const stream of AUDITED_STREAMS) {
        const [streamInfo, consumerInfo] = await Promise.all([
          link.jsm.streams.info(stream),
          link.jsm.consumers.info(stream, auditConsumerName(stream)),
        ]);
        if (consumerInfo.ack_floor.stream_seq < streamInfo.state.last_seq) return false;
      }
      return true;
    }, "the audit consumers to catch up");
  }

  beforeAll(async () => {
    [nats, database] = await Promise.all([startTestNats(), createTestDatabase("audit")]);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    link = await connectJetStream(nats.url, "audit-test-publisher", logger);
    db = createDb(database.url);
    log = new AuditLog(createAuditStore(db));
    await startLive();
  });

  afterAll(async () => {
    await stopLive();
    await link?.nc.close();
    await db?.$disconnect();
    await sql?.end();
    await Promise.all([nats?.stop(), database?.drop(), ...extraDatabases.map((extra) => extra.drop())]);
  });

  it("tells a transfer's whole story under its correlation id, in chain order, across streams", async () => {
    const correlationId = "corr-transfer-1";
    const transfer = { transferId: "tr-1", fromAccountId: "acc-a", toAccountId: "acc-b", amountMinor: "25000", currency: "INR" };
    const verdict = event(
      "fraud.check.completed",
      { transferId: "tr-1", passed: true, riskScore: 12, reasons: [], checkedAt: new Date().toISOString() },
      correlationId,
    );
    const story: Event[] = [
      event(
        "auth.login.succeeded",
        { userId: "user-1", sessionId: "s-1", deviceId: "d-1", method: "login", newDevice: false, deviceProven: false },
        correlationId,
        "user-1",
      ),
      event("transaction.initiated", { ...transfer, userId: "user-1" }, correlationId, "user-1"),
      event("account.debited", { transferId: "tr-1", accountId: "acc-a", amountMinor: "25000" }, correlationId, "user-1"),
      event(
        "fraud.check.requested",
        {
          ...transfer,
          userId: "user-1",
          requestDeviceId: "d-1",
          deviceProven: false,
          sessionDeviceId: "d-1",
          initiatedAt: new Date().toISOString(),
        },
        correlationId,
        "user-1",
      ),
      verdict,
      event("transaction.credit.requested", { transferId: "tr-1", toAccountId: "acc-b", amountMinor: "25000" }, correlationId),
      event("account.credited", { transferId: "tr-1", accountId: "acc-b", amountMinor: "25000" }, correlationId),
      event(
        "transaction.completed",
        { transferId: "tr-1", fromAccountId: "acc-a", toAccountId: "acc-b", amountMinor: "25000" },
        correlationId,
      ),
      event(
        "gateway.request",
        { operationName: "InitiateTransfer", operationType: "mutation", outcome: "success", errorCodes: [], durationMs: 42 },
        correlationId,
        "user-1",
      ),
    ];
    // As in the saga, each step follows the one before it.
    for (const step of story) {
      await publish(step);
      await waitUntil(() => stored(step.id), `${step.type} to be recorded`);
    }
    await publish(event("auth.login.failed", { userId: null, reason: "invalid_credentials", lockedForSeconds: null }, "corr-other"));
    await drained();

    const trail = await log.records(admin, { correlationId });
    expect(trail.map((record) => record.type)).toEqual(story.map((step) => step.type));
    expect(trail.map((record) => record.eventId)).toEqual(story.map((step) => step.id));
    expect(trail.map((record) => record.seq)).toEqual([...trail.map((record) => record.seq)].sort((a, b) => a - b));
    expect(trail[1]!.actorUserId).toBe("user-1");
    expect(trail[4]!.actorUserId).toBeNull();
    expect(JSON.parse(trail[4]!.data)).toEqual({
      transferId: "tr-1",
      passed: true,
      riskScore: 12,
      reasons: [],
      checkedAt: verdict.data.checkedAt,
    });
    expect(trail[4]!.data.indexOf('"checkedAt"')).toBeLessThan(trail[4]!.data.indexOf('"passed"'));

    const fraud = await log.records(admin, { correlationId, type: "fraud.check.completed" });
    expect(fraud.map((record) => record.eventId)).toEqual([story[4]!.id]);
    const page = await log.records(admin, { correlationId, first: 3, afterSeq: trail[2]!.seq });
    expect(page.map((record) => record.seq)).toEqual(trail.slice(3, 6).map((record) => record.seq));
    expect(await verifyChain(createAuditStore(db))).toEqual({ valid: true, checked: await count(), firstBrokenSeq: null });
  });

  it("records each read inside a gateway.request.batch as its own gateway.request record, never the batch, and once when redelivered", async () => {
    const read = (correlationId: string, userId: string) =>
      event(
        "gateway.request",
        { operationName: "MyAccounts", operationType: "query", outcome: "success", errorCodes: [], durationMs: 4 },
        correlationId,
        userId,
      );
    const reads = [read("corr-read-a", "user-a"), read("corr-read-b", "user-b"), read("corr-read-a", "user-a")];
    const batch = event("gateway.request.batch", { requests: reads }, "corr-batch");
    await publish(batch);
    // The same batch again under another message id (a gateway that republished it): nothing doubles.
    await publish(batch, `${batch.id}-again`);
    await drained();
    expect(await stored(batch.id)).toBe(false);
    const first = await log.records(admin, { correlationId: "corr-read-a" });
    expect(first.map((record) => [record.eventId, record.type, record.actorUserId])).toEqual([
      [reads[0]!.id, "gateway.request", "user-a"],
      [reads[2]!.id, "gateway.request", "user-a"],
    ]);
    expect(JSON.parse(first[0]!.data)).toEqual(reads[0]!.data);
    expect((await log.records(admin, { correlationId: "corr-read-b" })).map((record) => record.eventId)).toEqual([reads[1]!.id]);
    expect(await log.records(admin, { correlationId: "corr-batch" })).toEqual([]);
    expect(await verifyChain(createAuditStore(db))).toEqual({ valid: true, checked: await count(), firstBrokenSeq: null });
  });

  it("is for ADMIN only and caps the page size", async () => {
    await expect(log.records(customer, {})).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(log.verify(customer)).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(log.records(undefined, {})).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    await expect(log.records(admin, { first: 501 })).rejects.toBeInstanceOf(DomainError);
    await expect(log.records(admin, { first: 0 })).rejects.toMatchObject({ code: "BAD_USER_INPUT" });
    expect(await log.records(admin, { first: 500 })).toHaveLength(await count());
    // One record by its event id (entity resolution): ADMIN only, the id in either case, and
    // anything not a uuid answered as absent, not as a failed cast.
    const [first] = await log.records(admin, { first: 1 });
    await expect(log.record(customer, first!.eventId)).rejects.toMatchObject({ code: "FORBIDDEN" });
    expect(await log.record(admin, first!.eventId.toUpperCase())).toMatchObject({ seq: first!.seq, hash: first!.hash });
    expect(await log.record(admin, "-".repeat(36))).toBeNull();
  });

  it("refuses UPDATE, DELETE and TRUNCATE in the database, for the superuser too", async () => {
    const before = await count();
    await expect(sql.query(`UPDATE audit_record SET data = '{}' WHERE seq = 1`)).rejects.toThrow(/append-only: UPDATE/);
    await expect(sql.query(`DELETE FROM audit_record WHERE seq = 1`)).rejects.toThrow(/append-only: DELETE/);
    await expect(sql.query(`DELETE FROM audit_record WHERE false`)).rejects.toThrow(/append-only/);
    await expect(sql.query(`TRUNCATE audit_record`)).rejects.toThrow(/append-only: TRUNCATE/);
    await expect(sql.query(`UPDATE audit_chain_head SET seq = seq - 1, hash = repeat('0', 64)`)).rejects.toThrow(/only move forward/);
    await expect(sql.query(`UPDATE audit_chain_head SET seq = seq + 5`)).rejects.toThrow(/contiguous/);
    await expect(sql.query(`DELETE FROM audit_chain_head`)).rejects.toThrow(/append-only: DELETE/);
    await expect(sql.query(`TRUNCATE audit_chain_head`)).rejects.toThrow(/append-only: TRUNCATE/);
    expect(await count()).toBe(before);
  });

  it("stores a redelivered or republished event once", async () => {
    const once = event("auth.user.created", { userId: "user-2", role: "CUSTOMER" }, "corr-dup");
    await publish(once);
    // Past JetStream's own de-duplication (another Nats-Msg-Id): the consumer's record of handled ids stops it.
    await publish(once, `${once.id}-again`);
    await drained();
    expect((await sql.query(`SELECT count(*)::int AS n FROM audit_record WHERE event_id = $1`, [once.id])).rows[0].n).toBe(1);
    // Without the consumer's record (e.g. another durable): the append skips a stored id before taking a seq.
    const head = (await createAuditStore(db).readHead()).seq;
    expect(await db.$transaction((tx) => appendEntries(tx, [entryOf(once), entryOf(once)]))).toBe(0);
    expect((await createAuditStore(db).readHead()).seq).toBe(head);
    await expect(
      sql.query(
        `INSERT INTO audit_record (seq, event_id, type, occurred_at, correlation_id, data, hash) SELECT seq + 1, $1, 'x', now(), 'c', '{}', hash FROM audit_chain_head`,
        [once.id],
      ),
    ).rejects.toThrow(/audit_record_event_id_key/);
  });

  it("serializes five concurrent consumers into one gap-free chain, and continues after a restart", async () => {
    const burst: Event[] = [];
    for (let i = 0; i < 50; i += 1) {
      const correlationId = `corr-burst-${i}`;
      burst.push(
        event("auth.session.revoked", { userId: `u-${i}`, sessionId: `s-${i}`, reason: "logout" }, correlationId),
        event("account.refunded", { transferId: `t-${i}`, accountId: `a-${i}`, amountMinor: "1" }, correlationId),
        event("transaction.failed", { transferId: `t-${i}`, status: "FAILED", reason: "fraud" }, correlationId),
        event(
          "fraud.check.completed",
          { transferId: `t-${i}`, passed: false, riskScore: 90, reasons: ["velocity"], checkedAt: new Date().toISOString() },
          correlationId,
        ),
        event(
          "gateway.request",
          { operationName: null, operationType: "query", outcome: "error", errorCodes: ["FORBIDDEN"], durationMs: i },
          correlationId,
        ),
      );
    }
    await Promise.all(burst.map((item) => publish(item)));
    await drained();
    const seqs = (await sql.query(`SELECT seq::int FROM audit_record ORDER BY seq`)).rows.map((row) => row.seq as number);
    expect(seqs).toEqual(seqs.map((_, index) => index + 1));
    expect(await verifyChain(createAuditStore(db), 7)).toMatchObject({ valid: true, checked: seqs.length });

    await stopLive();
    const whileDown = Array.from({ length: 10 }, (_, i) =>
      event("auth.user.created", { userId: `late-${i}`, role: "CUSTOMER" }, `corr-late-${i}`),
    );
    for (const item of whileDown) await publish(item);
    expect(await stored(whileDown[0]!.id)).toBe(false);
    await startLive();
    await drained();
    for (const item of whileDown) expect(await stored(item.id)).toBe(true);
    expect(await count()).toBe(seqs.length + whileDown.length);
    expect((await verifyChain(createAuditStore(db))).valid).toBe(true);
  });

  it("rebuilds from the streams into an empty database: deterministic, with the live log's events", async () => {
    // Late arrival: an event that happened before others but reaches its stream after them.
    // Live, it is appended last; a rebuild sorts it by when it happened.
    const late = event("auth.login.failed", { userId: "user-1", reason: "invalid_otp", lockedForSeconds: null }, "corr-late-arrival");
    const backdated = { ...late, occurredAt: new Date(Date.now() - 60_000).toISOString() };
    await publish(backdated);
    // Not an event: dead-lettered live, skipped by a rebuild.
    await link.js.publish("account.created", JSON.stringify({ nonsense: true }), { msgID: "not-an-event" });
    await drained();
    await stopLive(); // a quiet log to compare with

    const rebuilt = [await createTestDatabase("audit"), await createTestDatabase("audit")];
    extraDatabases.push(...rebuilt);
    const chains: Array<Array<{ seq: number; event_id: string; hash: string }>> = [];
    const summaries = [];
    for (const target of rebuilt) {
      const targetDb = createDb(target.url);
      try {
        const result = await rebuildAuditLog({ db: targetDb, js: link.js, jsm: link.jsm, logger });
        // Duplicates: the event republished earlier, and the three reads of the batch republished earlier.
        expect(result).toMatchObject({ appended: await count(), skippedInvalid: 1, skippedDuplicate: 4 });
        const rows = await targetDb.$queryRawUnsafe<Array<{ seq: number; event_id: string; hash: string; occurred_at: Date }>>(
          `SELECT seq::int, event_id::text, hash, occurred_at FROM audit_record ORDER BY seq`,
        );
        chains.push(rows.map(({ seq, event_id, hash }) => ({ seq, event_id, hash })));
        // The rebuild order: (occurredAt, event id).
        const sorted = [...rows].sort((a, b) => a.occurred_at.getTime() - b.occurred_at.getTime() || (a.event_id < b.event_id ? -1 : 1));
        expect(rows.map((row) => row.event_id)).toEqual(sorted.map((row) => row.event_id));
        expect(await verifyChain(createAuditStore(targetDb))).toMatchObject({ valid: true, checked: rows.length });
        summaries.push(await summarizeChain(targetDb));
        await expect(rebuildAuditLog({ db: targetDb, js: link.js, jsm: link.jsm, logger })).rejects.toThrow(/not empty/);
      } finally {
        await targetDb.$disconnect();
      }
    }
    // 1. Two rebuilds from the same streams: the same chain, record for record.
    expect(chains[1]).toEqual(chains[0]);
    expect(summaries[1]).toEqual(summaries[0]);
    // 2. The same events as the live log, each with the same content hash; the order may differ.
    const liveSummary = await summarizeChain(db);
    expect(summaries[0]).toMatchObject({ records: liveSummary.records, contentDigest: liveSummary.contentDigest });
    expect(chains[0]!.findIndex((row) => row.event_id === late.id)).toBeLessThan(chains[0]!.length - 1);
    const liveLast = (await sql.query(`SELECT event_id::text FROM audit_record ORDER BY seq DESC LIMIT 1`)).rows[0].event_id;
    expect(liveLast).toBe(late.id);
    const liveRecord = (await log.records(admin, { correlationId: "corr-late-arrival" }))[0]!;
    const rebuiltDb = createDb(rebuilt[0]!.url);
    try {
      const rebuiltRecord = (await new AuditLog(createAuditStore(rebuiltDb)).records(admin, { correlationId: "corr-late-arrival" }))[0]!;
      expect(contentHash(rebuiltRecord)).toBe(contentHash(liveRecord));
    } finally {
      await rebuiltDb.$disconnect();
    }

    // The command an operator runs, end to end.
    const target = await createTestDatabase("audit");
    extraDatabases.push(target);
    const command = await run(process.execPath, ["subgraphs/audit/src/rebuild.ts", "--compare", database.url], {
      cwd: REPO_ROOT,
      env: { ...process.env, DATABASE_URL: target.url, NATS_URL: nats.url, LOG_LEVEL: "warn" },
    });
    expect(command.stdout).toContain(
      `rebuilt ${liveSummary.records} record(s) (skipped 1 invalid, 4 duplicate); head ${liveSummary.records} ${summaries[0]!.headHash}`,
    );
    expect(command.stdout).toContain("same events");
    await startLive();
  });

  it("refuses a rebuild once a stream has let go of its oldest events (past NATS_STREAM_MAX_AGE_HOURS)", async () => {
    const aging = await startTestNats();
    const target = await createTestDatabase("audit");
    extraDatabases.push(target);
    const targetDb = createDb(target.url);
    try {
      const short = await connectJetStream(aging.url, "audit-test", logger, { ...DEFAULT_STREAM_LIMITS, maxAgeMs: 1_000 });
      const gone = event("auth.login.failed", { userId: "user-1", reason: "invalid_otp", lockedForSeconds: null }, "corr-aged");
      await short.js.publish(gone.type, JSON.stringify(gone), { msgID: gone.id, headers: eventHeaders(gone) });
      await waitUntil(async () => (await short.jsm.streams.info("AUTH")).state.messages === 0, "the event aged out", 10_000);
      await expect(rebuildAuditLog({ db: targetDb, js: short.js, jsm: short.jsm, logger })).rejects.toThrow(
        /no longer hold the whole history.*AUTH \(its first 1 message\(s\)\)/,
      );
      expect(await targetDb.$queryRawUnsafe<Array<{ n: number }>>(`SELECT count(*)::int AS n FROM audit_record`)).toEqual([{ n: 0 }]);
      await short.nc.drain();
    } finally {
      await targetDb.$disconnect();
      await aging.stop();
    }
  });

  it("finds an altered, a removed and a truncated record at the right seq", async () => {
    const store = createAuditStore(db);
    const total = await count();
    const asSuperuser = async (statement: string, values: unknown[] = []) => {
      await sql.query(`ALTER TABLE audit_record DISABLE TRIGGER audit_record_append_only`);
      try {
        await sql.query(statement, values);
      } finally {
        await sql.query(`ALTER TABLE audit_record ENABLE TRIGGER audit_record_append_only`);
      }
    };

    const original = (await sql.query(`SELECT data FROM audit_record WHERE seq = 3`)).rows[0].data as string;
    expect(original).toContain('"amountMinor":"25000"');
    await asSuperuser(`UPDATE audit_record SET data = $1 WHERE seq = 3`, [original.replace("25000", "2500000")]);
    expect(await log.verify(admin)).toEqual({ valid: false, checked: 3, firstBrokenSeq: 3 });
    expect(await verifyChain(store, 2)).toEqual({ valid: false, checked: 3, firstBrokenSeq: 3 });
    await asSuperuser(`UPDATE audit_record SET data = $1 WHERE seq = 3`, [original]);
    expect(await log.verify(admin)).toEqual({ valid: true, checked: total, firstBrokenSeq: null });

    const row = (await sql.query(`SELECT * FROM audit_record WHERE seq = 12`)).rows[0];
    await asSuperuser(`DELETE FROM audit_record WHERE seq = 12`);
    expect(await verifyChain(store, 5)).toEqual({ valid: false, checked: 12, firstBrokenSeq: 12 });
    // Put back as it was, the chain is whole again: INSERT is the one thing the table allows.
    await sql.query(
      `INSERT INTO audit_record (seq, event_id, type, occurred_at, correlation_id, causation_id, actor_user_id, data, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [row.seq, row.event_id, row.type, row.occurred_at, row.correlation_id, row.causation_id, row.actor_user_id, row.data, row.hash],
    );
    expect((await log.verify(admin)).valid).toBe(true);

    await asSuperuser(`DELETE FROM audit_record WHERE seq >= $1`, [total - 1]);
    expect(await log.verify(admin)).toEqual({ valid: false, checked: total - 2, firstBrokenSeq: total - 1 });
  });
});
