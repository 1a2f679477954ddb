/**
 * Rebuilds the audit log from the streams into an empty, migrated audit database:
 *
 *   DATABASE_URL=postgres://…/vaultpay_audit_rebuilt NATS_URL=nats://… \
 *     node --import tsx subgraphs/audit/src/rebuild.ts [--compare postgres://…/vaultpay_audit]
 *
 * Order. The live chain is in the order appends committed: five consumers race, and NATS records
 * no order across streams, so that order cannot be recovered from the streams. A rebuild therefore
 * defines its own total order, independent of delivery timing: every event of AUTH, ACCOUNTS,
 * TRANSACTIONS, FRAUD and GATEWAY (up to each stream's last sequence when the rebuild starts), once
 * per event id, sorted by (occurredAt, event id). "Same chain" means:
 *   1. two rebuilds from the same streams give identical chains (seq, event id, hash, head);
 *   2. a rebuild holds exactly the live log's events, each with the same content hash
 *      (chain.ts contentHash: everything but seq and the previous hash) — compared through an
 *      order-independent digest over (event id, content hash) sorted by event id.
 * Live and rebuilt chains are byte-identical only when the live appends happened in that same
 * order (e.g. one stream, or events far enough apart in time).
 *
 * Memory is bounded: events are staged in a temporary table and appended in sorted batches, all
 * in one transaction, so a failed rebuild leaves the target database empty.
 */
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { connectJetStream, parseEvent } from "@vaultpay/events";
import { createLogger, type Logger } from "@vaultpay/kit";
import { contentHash, type AuditEntry } from "./chain.ts";
import { createDb, type Db, type Tx } from "./db.ts";
import { AUDITED_STREAMS, entryOf } from "./events.ts";
import { appendEntries } from "./store.ts";

/** Events staged or appended per statement. */
const REBUILD_BATCH_SIZE = 500;
/** A rebuild is one transaction; generous, as it reads the streams' whole history. */
const REBUILD_TRANSACTION_TIMEOUT_MS = 60 * 60_000;
/** Gives up on a stream that stops delivering before its last sequence. */
const STREAM_IDLE_TIMEOUT_MS = 30_000;

export interface RebuildResult {
  appended: number;
  /** Messages that are not valid events (the live consumers dead-letter those too). */
  skippedInvalid: number;
  /** Event ids seen more than once (republished beyond JetStream's duplicate window). */
  skippedDuplicate: number;
  headSeq: number;
  headHash: string;
}

export async function rebuildAuditLog(options: {
  db: Db;
  js: JetStreamClient;
  jsm: JetStreamManager;
  logger: Logger;
}): Promise<RebuildResult> {
  const { db, logger } = options;
  const head = await db.auditChainHead.findUniqueOrThrow({ where: { id: 1 } });
  if (head.seq !== 0n || (await db.auditRecord.count()) > 0) {
    throw new Error("the target audit database is not empty: rebuild into a freshly migrated one");
  }
  return db.$transaction(
    async (tx) => {
      await tx.$executeRawUnsafe(
        `CREATE TEMPORARY TABLE audit_rebuild (event_id uuid PRIMARY KEY, occurred_at timestamptz(3) NOT NULL, entry text NOT NULL) ON COMMIT DROP`,
      );
      let staged = 0;
      let skippedInvalid = 0;
      let read = 0;
      for (const stream of AUDITED_STREAMS) {
        const counts = await stageStream(tx, options, stream);
        staged += counts.staged;
        skippedInvalid += counts.invalid;
        read += counts.read;
        logger.info({ stream, ...counts }, "stream staged");
      }
      let appended = 0;
      let after: { occurredAt: string; eventId: string } | undefined;
      for (;;) {
        const rows = await tx.$queryRawUnsafe<Array<{ event_id: string; occurred_at: string; entry: string }>>(
          `SELECT event_id::text, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred_at, entry
             FROM audit_rebuild
            WHERE $1::timestamptz IS NULL OR (occurred_at, event_id) > ($1::timestamptz, $2::uuid)
            ORDER BY occurred_at, event_id
            LIMIT ${REBUILD_BATCH_SIZE}`,
          after?.occurredAt ?? null,
          after?.eventId ?? null,
        );
        if (rows.length === 0) break;
        appended += await appendEntries(
          tx,
          rows.map((row) => JSON.parse(row.entry) as AuditEntry),
        );
        const last = rows[rows.length - 1]!;
        after = { occurredAt: last.occurred_at, eventId: last.event_id };
      }
      if (appended !== staged) throw new Error(`staged ${staged} events but appended ${appended}`);
      const final = await tx.auditChainHead.findUniqueOrThrow({ where: { id: 1 } });
      return {
        appended,
        skippedInvalid,
        skippedDuplicate: read - skippedInvalid - staged,
        headSeq: Number(final.seq),
        headHash: final.hash,
      };
    },
    { timeout: REBUILD_TRANSACTION_TIMEOUT_MS, maxWait: 10_000 },
  );
}

/** Reads one stream from its first message to its last sequence as of now, into the staging table. */
async function stageStream(
  tx: Tx,
  options: { js: JetStreamClient; jsm: JetStreamManager; logger: Logger },
  stream: string,
): Promise<{ read: number; staged: number; invalid: number }> {
  const info = await options.jsm.streams.info(stream);
  const lastSeq = info.state.last_seq;
  const counts = { read: 0, staged: 0, invalid: 0 };
  if (info.state.messages === 0) return counts;
  // An ordered consumer: ephemeral, in stream order, recreated by the client on any gap.
  const consumer = await options.js.consumers.get(stream);
  const messages = await consumer.consume({ max_messages: REBUILD_BATCH_SIZE, idle_heartbeat: 1_000 });
  let batch: AuditEntry[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    counts.staged += await tx.$executeRawUnsafe(
      `INSERT INTO audit_rebuild (event_id, occurred_at, entry)
       SELECT e::uuid, o::timestamptz, t FROM unnest($1::text[], $2::text[], $3::text[]) AS u(e, o, t)
       ON CONFLICT (event_id) DO NOTHING`,
      batch.map((entry) => entry.eventId),
      batch.map((entry) => entry.occurredAt),
      batch.map((entry) => JSON.stringify(entry)),
    );
    batch = [];
  };
  let idle: NodeJS.Timeout | undefined;
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => void messages.close(), STREAM_IDLE_TIMEOUT_MS);
  };
  armIdle();
  let reachedEnd = false;
  try {
    for await (const message of messages) {
      armIdle();
      counts.read += 1;
      try {
        batch.push(entryOf(parseEvent(message.json())));
      } catch (error) {
        counts.invalid += 1;
        options.logger.warn({ stream, streamSeq: message.seq, err: error }, "not a valid event, skipped");
      }
      if (batch.length >= REBUILD_BATCH_SIZE) await flush();
      if (message.seq >= lastSeq) {
        reachedEnd = true;
        break;
      }
    }
  } finally {
    clearTimeout(idle);
    await messages.close().catch(() => undefined);
  }
  if (!reachedEnd) throw new Error(`stream ${stream} stopped delivering before its last sequence ${lastSeq}`);
  await flush();
  return counts;
}

export interface ChainSummary {
  records: number;
  headSeq: number;
  headHash: string;
  /** sha256 over "eventId contentHash\n" in event id order: equal for logs holding the same events, whatever their order. */
  contentDigest: string;
}

/** What two audit logs are compared by (see the top of this file); reads in bounded batches. */
export async function summarizeChain(db: Db): Promise<ChainSummary> {
  const head = await db.auditChainHead.findUniqueOrThrow({ where: { id: 1 } });
  const digest = createHash("sha256");
  let records = 0;
  let afterEventId: string | undefined;
  for (;;) {
    const rows = await db.auditRecord.findMany({
      where: afterEventId ? { eventId: { gt: afterEventId } } : {},
      orderBy: { eventId: "asc" },
      take: REBUILD_BATCH_SIZE,
    });
    if (rows.length === 0) break;
    for (const row of rows) {
      digest.update(`${row.eventId} ${contentHash({ ...row, occurredAt: row.occurredAt.toISOString() })}\n`);
    }
    records += rows.length;
    afterEventId = rows[rows.length - 1]!.eventId;
  }
  return { records, headSeq: Number(head.seq), headHash: head.hash, contentDigest: digest.digest("hex") };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { compare: { type: "string" } } });
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    console.error("DATABASE_URL must name the empty, migrated audit database to rebuild into");
    process.exit(2);
  }
  const logger = createLogger({ service: "audit-rebuild" });
  const link = await connectJetStream(process.env.NATS_URL ?? "nats://127.0.0.1:4322", "audit-rebuild", logger, false);
  const db = createDb(databaseUrl);
  try {
    const result = await rebuildAuditLog({ db, js: link.js, jsm: link.jsm, logger });
    console.log(
      `rebuilt ${result.appended} record(s) (skipped ${result.skippedInvalid} invalid, ${result.skippedDuplicate} duplicate); head ${result.headSeq} ${result.headHash}`,
    );
    if (values.compare) {
      const live = createDb(values.compare);
      try {
        const [rebuilt, current] = await Promise.all([summarizeChain(db), summarizeChain(live)]);
        const same = rebuilt.contentDigest === current.contentDigest && rebuilt.records === current.records;
        console.log(
          `live ${current.records} record(s), digest ${current.contentDigest}; rebuilt digest ${rebuilt.contentDigest}: ${same ? "same events" : "DIFFERENT"}`,
        );
        if (!same) process.exitCode = 1;
      } finally {
        await live.$disconnect();
      }
    }
  } finally {
    await db.$disconnect();
    await link.nc.drain();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
