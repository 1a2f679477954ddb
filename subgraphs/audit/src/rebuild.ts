/**
 * Rebuilds the audit log from the streams into an empty, migrated audit database:
 *
 *   DATABASE_URL=postgres://…/vaultpay_audit_rebuilt NATS_URL=nats://… \
 *     node subgraphs/audit/src/rebuild.ts [--compare postgres://…/vaultpay_audit]
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
 * Only from streams that still hold every message since their first (see requireWholeHistory).
 *
 * Memory is bounded: events are staged in a temporary table and appended in sorted batches, all
 * in one transaction, so a failed rebuild leaves the target database empty.
 */
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { connectJetStream, localNatsUrl, parseEvent } from "@vaultpay/events";
import { createLogger, type Logger } from "@vaultpay/kit";
import { contentHash, type AuditEntry } from "./chain.ts";
import { createDb, type Db, type Tx } from "./db.ts";
import { AUDITED_STREAMS, entriesOf } from "./events.ts";
import {
  appendEntries,
  createAuditStore,
  createRebuildStaging,
  isAuditLogEmpty,
  readRecordsByEventId,
  readStagedEntries,
  type RebuildCursor,
  stageRebuildEntries,
} from "./store.ts";

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
  if (!(await isAuditLogEmpty(db))) {
    throw new Error("the target audit database is not empty: rebuild into a freshly migrated one");
  }
  await requireWholeHistory(options.jsm);
  return db.$transaction(
    async (tx) => {
      await createRebuildStaging(tx);
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
      const appended = await appendStaged(tx);
      if (appended !== staged) throw new Error(`staged ${staged} events but appended ${appended}`);
      const final = await createAuditStore(tx).readHead();
      return {
        appended,
        skippedInvalid,
        skippedDuplicate: read - skippedInvalid - staged,
        headSeq: final.seq,
        headHash: final.hash,
      };
    },
    { timeout: REBUILD_TRANSACTION_TIMEOUT_MS, maxWait: 10_000 },
  );
}

/**
 * Refuses a rebuild from streams that no longer hold their first messages: past
 * NATS_STREAM_MAX_AGE_HOURS the event streams let go of them, and a chain rebuilt from the rest
 * would be a different log that verifies. The audit database's backup is the history then.
 */
async function requireWholeHistory(jsm: JetStreamManager): Promise<void> {
  const missing: string[] = [];
  for (const stream of AUDITED_STREAMS) {
    const { first_seq: firstSeq } = (await jsm.streams.info(stream)).state;
    if (firstSeq > 1) missing.push(`${stream} (its first ${firstSeq - 1} message(s))`);
  }
  if (missing.length > 0) {
    throw new Error(
      `the streams no longer hold the whole history, so a rebuild cannot reproduce the log: gone from ${missing.join(", ")}; ` +
        "restore the audit database from its backup instead",
    );
  }
}

/** Appends the staged events to the chain in the rebuild's order, a batch at a time; returns how many. */
async function appendStaged(tx: Tx): Promise<number> {
  let appended = 0;
  let after: RebuildCursor | undefined;
  for (;;) {
    const batch = await readStagedEntries(tx, after, REBUILD_BATCH_SIZE);
    if (batch.entries.length === 0) return appended;
    appended += await appendEntries(tx, batch.entries);
    after = batch.next;
  }
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
    counts.staged += await stageRebuildEntries(tx, batch);
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
      try {
        // Events, not messages: the requests of a gateway.request.batch each count.
        const entries = entriesOf([parseEvent(message.json())]);
        counts.read += entries.length;
        batch.push(...entries);
      } catch (error) {
        counts.read += 1;
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
  const head = await createAuditStore(db).readHead();
  const digest = createHash("sha256");
  let records = 0;
  let afterEventId: string | undefined;
  for (;;) {
    const batch = await readRecordsByEventId(db, afterEventId, REBUILD_BATCH_SIZE);
    if (batch.length === 0) break;
    for (const record of batch) digest.update(`${record.eventId} ${contentHash(record)}\n`);
    records += batch.length;
    afterEventId = batch[batch.length - 1]!.eventId;
  }
  return { records, headSeq: head.seq, headHash: head.hash, contentDigest: digest.digest("hex") };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { compare: { type: "string" } } });
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) {
    console.error("DATABASE_URL must name the empty, migrated audit database to rebuild into");
    process.exit(2);
  }
  const logger = createLogger({ service: "audit-rebuild" });
  // Unset: the local stack's NATS (pnpm start's data folder) as the operator.
  const link = await connectJetStream(process.env.NATS_URL ?? localNatsUrl(), "audit-rebuild", logger, false);
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
