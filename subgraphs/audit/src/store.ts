import type { AuditEntry, ChainedRecord } from "./chain.ts";
import { link } from "./chain.ts";
import type { Db, Tx } from "./db.ts";
import type { AuditStore, ChainHead } from "./service.ts";
import { walkIndexes, type SqlExecutor } from "@vaultpay/events";

type Executor = Db | Tx;

interface RecordRow {
  seq: bigint;
  eventId: string;
  type: string;
  occurredAt: Date;
  correlationId: string;
  causationId: string | null;
  actorUserId: string | null;
  data: string;
  hash: string;
}

function toRecord(row: RecordRow): ChainedRecord {
  return {
    seq: Number(row.seq),
    eventId: row.eventId,
    type: row.type,
    occurredAt: row.occurredAt.toISOString(),
    correlationId: row.correlationId,
    causationId: row.causationId,
    actorUserId: row.actorUserId,
    data: row.data,
    hash: row.hash,
  };
}

/**
 * Appends entries, in the given order, after the chain head. The head row is locked for the rest
 * of the transaction, so appends from the five stream consumers (and from replicas) are serialized
 * into one chain, and seq is gap-free: a rolled-back append rolls back its head move too.
 * Entries already stored (same event id) are skipped before a seq is assigned; the unique
 * constraint on event_id stays the last line of defence. Returns the number appended.
 */
export async function appendEntries(tx: SqlExecutor, entries: readonly AuditEntry[]): Promise<number> {
  if (entries.length === 0) return 0;
  const byId = new Map<string, AuditEntry>();
  for (const entry of entries) if (!byId.has(entry.eventId)) byId.set(entry.eventId, entry);
  // Four statements per append, whatever its size (each round trip costs CPU on both ends): the
  // planner settings; the head, locked, with the ids already stored; the records; the new head.
  // The ids are looked up in the event_id index whatever the statistics say: planned with the
  // statistics of a log that was small (autovacuum analyzes it a minute or more later), the check
  // compared every record with every id, and an append's cost grew with the log (83 → 267 µs of
  // PostgreSQL CPU per record from 3,000 to 12,000 records; 33 % of audit's backends in a profile).
  // The live consumers' SqlPool transactions already begin with the scan settings (and plan each
  // statement once per connection: the lookup's generic plan is the same index scan); this call is
  // for the rebuild's Prisma transaction.
  await walkIndexes(tx);
  const heads = await tx.$queryRawUnsafe<Array<{ seq: string; hash: string; stored: string[] }>>(
    `SELECT h.seq::text AS seq, h.hash,
            ARRAY(SELECT r.event_id::text FROM audit_record r WHERE r.event_id = ANY($1::uuid[])) AS stored
       FROM audit_chain_head h WHERE h.id = 1 FOR UPDATE OF h`,
    [...byId.keys()],
  );
  const head = heads[0];
  if (!head) throw new Error("audit_chain_head has no row: the audit migrations were not applied");
  for (const eventId of head.stored) byId.delete(eventId);
  if (byId.size === 0) return 0;
  const records = link({ seq: Number(head.seq), hash: head.hash }, [...byId.values()]);
  const last = records[records.length - 1]!;
  const column = <K extends keyof ChainedRecord>(key: K) => records.map((record) => record[key]);
  await tx.$executeRawUnsafe(
    `INSERT INTO audit_record (seq, event_id, type, occurred_at, correlation_id, causation_id, actor_user_id, data, hash)
     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])`,
    column("seq").map(String),
    column("eventId"),
    column("type"),
    column("occurredAt"),
    column("correlationId"),
    column("causationId"),
    column("actorUserId"),
    column("data"),
    column("hash"),
  );
  // A statement of its own: the head's trigger checks the records it moves onto, which a
  // data-modifying CTE of the same statement would not show it.
  await tx.$executeRawUnsafe(`UPDATE audit_chain_head SET seq = $1::bigint, hash = $2 WHERE id = 1`, String(last.seq), last.hash);
  return records.length;
}

export function createAuditStore(db: Executor): AuditStore {
  return {
    async list(filter) {
      const rows = await db.auditRecord.findMany({
        where: {
          seq: { gt: BigInt(filter.afterSeq) },
          ...(filter.correlationId !== undefined ? { correlationId: filter.correlationId } : {}),
          ...(filter.type !== undefined ? { type: filter.type } : {}),
        },
        orderBy: { seq: "asc" },
        take: filter.first,
      });
      return rows.map(toRecord);
    },
    async findByEventId(eventId) {
      const row = await db.auditRecord.findUnique({ where: { eventId } });
      return row ? toRecord(row) : undefined;
    },
    async readChain(afterSeq, throughSeq, limit) {
      const rows = await db.auditRecord.findMany({
        where: { seq: { gt: BigInt(afterSeq), lte: BigInt(throughSeq) } },
        orderBy: { seq: "asc" },
        take: limit,
      });
      return rows.map(toRecord);
    },
    async readHead(): Promise<ChainHead> {
      const head = await db.auditChainHead.findUniqueOrThrow({ where: { id: 1 } });
      return { seq: Number(head.seq), hash: head.hash };
    },
  };
}

/** The sequence number of the last audit record (the chain's head); 0 before the first. */
export async function chainHeadSeq(db: Db): Promise<number> {
  const rows = (await db.$queryRawUnsafe(`SELECT seq::float8 AS seq FROM audit_chain_head WHERE id = 1`)) as Array<{ seq: number }>;
  return rows[0]?.seq ?? 0;
}

// The rebuild's storage (rebuild.ts): the emptiness check of its target, the staging table that
// puts the streams' events in the rebuild's order, and the read that compares two logs.

/** True for a freshly migrated audit database: no record, and the head still at the genesis row. */
export async function isAuditLogEmpty(db: Db): Promise<boolean> {
  const head = await db.auditChainHead.findUniqueOrThrow({ where: { id: 1 } });
  return head.seq === 0n && (await db.auditRecord.count()) === 0;
}

/** Creates the staging table of a rebuild; it lives only as long as the rebuild's transaction. */
export async function createRebuildStaging(tx: Tx): Promise<void> {
  await tx.$executeRawUnsafe(
    `CREATE TEMPORARY TABLE audit_rebuild (event_id uuid PRIMARY KEY, occurred_at timestamptz(3) NOT NULL, entry text NOT NULL) ON COMMIT DROP`,
  );
}

/** Stages entries once per event id (a republished event is staged once); returns how many were new. */
export async function stageRebuildEntries(tx: Tx, entries: readonly AuditEntry[]): Promise<number> {
  if (entries.length === 0) return 0;
  return tx.$executeRawUnsafe(
    `INSERT INTO audit_rebuild (event_id, occurred_at, entry)
     SELECT e::uuid, o::timestamptz, t FROM unnest($1::text[], $2::text[], $3::text[]) AS u(e, o, t)
     ON CONFLICT (event_id) DO NOTHING`,
    entries.map((entry) => entry.eventId),
    entries.map((entry) => entry.occurredAt),
    entries.map((entry) => JSON.stringify(entry)),
  );
}

/** Where a read of the staging table stopped: the (occurredAt, event id) of its last entry, as stored. */
export interface RebuildCursor {
  occurredAt: string;
  eventId: string;
}

/**
 * The next staged entries in the rebuild's order, (occurredAt, event id), after `after`; `next` is
 * where the following read starts. The cursor is read back from the table rather than taken from
 * the entry, so it compares exactly as the stored values do.
 */
export async function readStagedEntries(
  tx: Tx,
  after: RebuildCursor | undefined,
  limit: number,
): Promise<{ entries: AuditEntry[]; next: RebuildCursor | undefined }> {
  const rows = await tx.$queryRawUnsafe<Array<{ event_id: string; occurred_at: string; entry: string }>>(
    `SELECT event_id::text, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred_at, entry
       FROM audit_rebuild
      WHERE $1::timestamptz IS NULL OR (occurred_at, event_id) > ($1::timestamptz, $2::uuid)
      ORDER BY occurred_at, event_id
      LIMIT $3`,
    after?.occurredAt ?? null,
    after?.eventId ?? null,
    limit,
  );
  const last = rows[rows.length - 1];
  return {
    entries: rows.map((row) => JSON.parse(row.entry) as AuditEntry),
    next: last ? { occurredAt: last.occurred_at, eventId: last.event_id } : undefined,
  };
}

/** Records in event id order after `afterEventId`, at most `limit`: the order two logs are compared in. */
export async function readRecordsByEventId(db: Executor, afterEventId: string | undefined, limit: number): Promise<ChainedRecord[]> {
  const rows = await db.auditRecord.findMany({
    where: afterEventId ? { eventId: { gt: afterEventId } } : {},
    orderBy: { eventId: "asc" },
    take: limit,
  });
  return rows.map(toRecord);
}
