import type { AuditEntry, ChainedRecord } from "./chain.ts";
import { link } from "./chain.ts";
import type { Db, Tx } from "./db.ts";
import type { AuditStore, ChainHead } from "./service.ts";

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
export async function appendEntries(tx: Tx, entries: readonly AuditEntry[]): Promise<number> {
  if (entries.length === 0) return 0;
  const heads = await tx.$queryRaw<Array<{ seq: bigint; hash: string }>>`SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE`;
  const head = heads[0];
  if (!head) throw new Error("audit_chain_head has no row: the audit migrations were not applied");
  const byId = new Map<string, AuditEntry>();
  for (const entry of entries) if (!byId.has(entry.eventId)) byId.set(entry.eventId, entry);
  const stored = await tx.auditRecord.findMany({ where: { eventId: { in: [...byId.keys()] } }, select: { eventId: true } });
  for (const { eventId } of stored) byId.delete(eventId);
  if (byId.size === 0) return 0;
  const records = link({ seq: Number(head.seq), hash: head.hash }, [...byId.values()]);
  await tx.auditRecord.createMany({
    data: records.map((record) => ({ ...record, seq: BigInt(record.seq), occurredAt: new Date(record.occurredAt) })),
  });
  const last = records[records.length - 1]!;
  await tx.auditChainHead.update({ where: { id: 1 }, data: { seq: BigInt(last.seq), hash: last.hash } });
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
