/** Prisma behind the saga's store port and the transfer queries. */
import {
  appendToOutbox,
  createEvent,
  outboxRowsCte,
  outboxRowsParameters,
  outboxRowsSelect,
  preferIndexScans,
  takeBufferedEvents,
  type Event,
  type EventData,
  type EventType,
  type SqlExecutor,
} from "@vaultpay/events";
import { isUuid } from "@vaultpay/kit";
import type { Db, Tx } from "./db.ts";
import type { Prisma } from "./generated/prisma/client.ts";
import type { OverdueTransfer, SagaStore, TransferPatch, TransferState } from "./saga.ts";
import type { TransferStatus } from "./transfers.ts";

type TransferRow = Awaited<ReturnType<Tx["transfer"]["findUniqueOrThrow"]>>;

/**
 * Each column of a transfer as raw statements select it, under the model's field name (keyed by
 * every field: a new column cannot be forgotten here).
 */
const TRANSFER_COLUMN: Record<keyof TransferRow, string> = {
  id: "id::text AS id",
  userId: `user_id AS "userId"`,
  fromAccountId: `from_account_id AS "fromAccountId"`,
  fromMaskedNumber: `from_masked_number AS "fromMaskedNumber"`,
  toAccountId: `to_account_id AS "toAccountId"`,
  toUserId: `to_user_id AS "toUserId"`,
  toMaskedNumber: `to_masked_number AS "toMaskedNumber"`,
  amountMinor: `amount_minor AS "amountMinor"`,
  currency: "currency",
  note: "note",
  status: "status::text AS status",
  failureReason: `failure_reason AS "failureReason"`,
  idempotencyKey: `idempotency_key AS "idempotencyKey"`,
  requestHash: `request_hash AS "requestHash"`,
  requestDeviceId: `request_device_id AS "requestDeviceId"`,
  requestDeviceProven: `request_device_proven AS "requestDeviceProven"`,
  sessionDeviceId: `session_device_id AS "sessionDeviceId"`,
  correlationId: `correlation_id AS "correlationId"`,
  step: "step::text AS step",
  stepAttempts: `step_attempts AS "stepAttempts"`,
  stepDeadlineAt: `step_deadline_at AS "stepDeadlineAt"`,
  createdAt: `created_at AS "createdAt"`,
  updatedAt: `updated_at AS "updatedAt"`,
};

/** The fields of the saga's state: what its raw locking reads select. */
const LOCKED_FIELDS = [
  "id",
  "userId",
  "fromAccountId",
  "toAccountId",
  "amountMinor",
  "currency",
  "status",
  "step",
  "stepAttempts",
  "failureReason",
  "requestDeviceId",
  "requestDeviceProven",
  "sessionDeviceId",
  "correlationId",
  "createdAt",
] as const satisfies ReadonlyArray<keyof TransferRow>;

const LOCKED_TRANSFER_COLUMNS = LOCKED_FIELDS.map((field) => TRANSFER_COLUMN[field]).join(", ");
/** Every column: for raw statements that return whole rows. */
const TRANSFER_COLUMNS = Object.values(TRANSFER_COLUMN).join(", ");

type LockedTransferRow = Pick<TransferRow, (typeof LOCKED_FIELDS)[number]>;

/** Locks and reads the transfers whose ids are parameter $n, in id order (two batches cannot deadlock). */
function lockTransfersSql(n: number): string {
  return `SELECT ${LOCKED_TRANSFER_COLUMNS} FROM transfer WHERE id = ANY($${n}::uuid[]) ORDER BY id FOR UPDATE`;
}

export function toState(row: LockedTransferRow): TransferState {
  return {
    id: row.id,
    userId: row.userId,
    fromAccountId: row.fromAccountId,
    toAccountId: row.toAccountId,
    amountMinor: row.amountMinor,
    currency: row.currency,
    status: row.status,
    step: row.step,
    stepAttempts: row.stepAttempts,
    failureReason: row.failureReason,
    requestDeviceId: row.requestDeviceId,
    requestDeviceProven: row.requestDeviceProven,
    sessionDeviceId: row.sessionDeviceId,
    correlationId: row.correlationId,
    createdAt: row.createdAt,
  };
}

/**
 * The saga's store for a batch of events in one transaction, in a fixed number of statements
 * whatever its size: the batch's transfers are locked and read at once (in id order, so two
 * batches cannot deadlock), the saga's updates and status changes are kept in memory — a later
 * event of the same transfer in the batch sees them — and written by `flush` in one UPDATE and
 * one INSERT. Events go to the outbox as they are emitted (buffered by the consumer).
 */
export class BatchSagaStore implements SagaStore {
  private readonly locked = new Map<string, TransferState>();
  private readonly deadlines = new Map<string, Date | null>();
  private readonly statuses: Array<{ transferId: string; status: TransferStatus; reason: string | null; at: Date }> = [];

  private readonly tx: SqlExecutor;

  constructor(tx: SqlExecutor) {
    this.tx = tx;
  }

  /** Locks and reads these transfers (unknown ids are skipped). */
  async preload(ids: readonly string[]): Promise<void> {
    const wanted = this.notLockedYet(ids);
    if (wanted.length === 0) return;
    const rows = await this.tx.$queryRawUnsafe<LockedTransferRow[]>(lockTransfersSql(1), wanted);
    for (const row of rows) this.locked.set(row.id, toState(row));
  }

  /** Transfers the caller locked and read itself in this transaction (lockOverdue). */
  adopt(transfers: readonly TransferState[]): void {
    for (const transfer of transfers) this.locked.set(transfer.id, { ...transfer });
  }

  /** The valid ids among these that this batch has not locked yet, once each. */
  private notLockedYet(ids: readonly string[]): string[] {
    return [...new Set(ids)].filter((id) => isUuid(id) && !this.locked.has(id));
  }

  /**
   * Records the batch's events as processed by `consumer` and locks and reads their transfers, in
   * one statement (the consumer's `deduplicatesItself`): one round trip, where the consumer's own
   * processed_event insert was another hand-off on the saga's path. Returns the ids of the events
   * not processed before (lower-case); only those may be applied. The rows are locked in id order
   * and read as last committed (FOR UPDATE), as preload reads them, all of them before the
   * processed rows are written: two batches holding the same redelivered event wait for each other
   * in one order only.
   */
  async preloadRecording(consumer: string, events: readonly Event[], ids: readonly string[]): Promise<Set<string>> {
    const wanted = this.notLockedYet(ids);
    const rows = await this.tx.$queryRawUnsafe<Array<Partial<LockedTransferRow> & { fresh: string[] | null }>>(
      `WITH locked AS MATERIALIZED (${lockTransfersSql(3)}), processed AS (
         -- Recorded only once every transfer is locked (the count reads them all first): one order for all batches.
         INSERT INTO processed_event (consumer, event_id)
         SELECT $1, id FROM unnest($2::uuid[]) AS id WHERE (SELECT count(*) FROM locked) >= 0
         ON CONFLICT DO NOTHING RETURNING event_id
       )
       -- The new ids once, on one row: on every row they were written out and parsed again for
       -- each transfer (32 × 32 ids for a full batch).
       SELECT locked.*, CASE WHEN row_number() OVER () = 1 THEN ARRAY(SELECT event_id::text FROM processed) END AS fresh
         FROM (VALUES (1)) AS one (x) LEFT JOIN locked ON true`,
      consumer,
      events.map((event) => event.id),
      wanted,
    );
    for (const row of rows) if (row.id !== undefined && row.id !== null) this.locked.set(row.id, toState(row as LockedTransferRow));
    return new Set(rows.find((row) => row.fresh !== null)?.fresh ?? []);
  }

  async lockTransfer(id: string): Promise<TransferState | null> {
    if (!this.locked.has(id)) await this.preload([id]);
    const state = this.locked.get(id);
    return state ? { ...state } : null;
  }

  async update(id: string, patch: TransferPatch): Promise<void> {
    const state = this.locked.get(id);
    if (!state) throw new Error(`transfer ${id} updated without its lock`);
    this.locked.set(id, {
      ...state,
      status: patch.status ?? state.status,
      step: patch.step,
      stepAttempts: patch.stepAttempts,
      failureReason: patch.failureReason === undefined ? state.failureReason : patch.failureReason,
    });
    this.deadlines.set(id, patch.stepDeadlineAt);
  }

  async recordStatus(transferId: string, status: TransferStatus, reason: string | null, at: Date): Promise<void> {
    this.statuses.push({ transferId, status, reason, at });
  }

  async emit<T extends EventType>(type: T, data: EventData<T>): Promise<void> {
    await appendToOutbox(this.tx, createEvent(type, data));
  }

  /**
   * Writes the transfers' final state, their status changes in the order they happened, and the
   * events the batch emitted (takeBufferedEvents), in one statement: one round trip, where three
   * were one hand-off each on the saga's path. Outside withBufferedOutbox the events were written
   * as they were emitted.
   */
  async flush(): Promise<void> {
    const changed = [...this.deadlines.keys()].map((id) => this.locked.get(id)!);
    const events = takeBufferedEvents(this.tx);
    if (changed.length === 0 && this.statuses.length === 0 && events.length === 0) return;
    const [row] = await this.tx.$queryRawUnsafe<Array<{ updated: number }>>(
      `WITH updated AS (
         UPDATE transfer AS t
            SET status = v.status::"TransferStatus", step = v.step::"SagaStep", step_attempts = v.attempts::int,
                step_deadline_at = v.deadline::timestamptz, failure_reason = v.reason, updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS v(id, status, step, attempts, deadline, reason)
          WHERE t.id = v.id
         RETURNING 1
       ), changes AS (
         INSERT INTO transfer_status_change (transfer_id, status, reason, changed_at)
         SELECT id, status::"TransferStatus", reason, at::timestamptz
           FROM unnest($7::uuid[], $8::text[], $9::text[], $10::text[]) WITH ORDINALITY AS s(id, status, reason, at, n) ORDER BY s.n
       ), ${outboxRowsCte(11)}
       SELECT (SELECT count(*) FROM updated)::int AS updated`,
      changed.map((state) => state.id),
      changed.map((state) => state.status),
      changed.map((state) => state.step),
      changed.map((state) => String(state.stepAttempts)),
      changed.map((state) => this.deadlines.get(state.id)?.toISOString() ?? null),
      changed.map((state) => state.failureReason),
      this.statuses.map((change) => change.transferId),
      this.statuses.map((change) => change.status),
      this.statuses.map((change) => change.reason),
      this.statuses.map((change) => change.at.toISOString()),
      ...outboxRowsParameters(events),
    );
    // Every changed transfer was locked by this batch: a missing one is a bug, not a race.
    if (row?.updated !== changed.length) throw new Error(`${changed.length - (row?.updated ?? 0)} locked transfer(s) not updated`);
    this.deadlines.clear();
    this.statuses.length = 0;
  }
}

/** Transfers whose current step is overdue, locked for this transaction (replicas skip each other's). */
export async function lockOverdue(tx: Tx, limit: number): Promise<OverdueTransfer[]> {
  // Each saga step moves a transfer's deadline and leaves its old index entry behind, dead, until VACUUM.
  await preferIndexScans(tx);
  const rows = await tx.$queryRawUnsafe<Array<LockedTransferRow & { stepDeadlineAt: Date }>>(
    `SELECT ${LOCKED_TRANSFER_COLUMNS}, ${TRANSFER_COLUMN.stepDeadlineAt} FROM transfer
      WHERE step <> 'NONE' AND step_deadline_at < now()
      ORDER BY step_deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
    limit,
  );
  return rows.map((row) => ({ ...toState(row), stepDeadlineAt: row.stepDeadlineAt }));
}

/** A new transfer's every column: what initiate decides. */
export type NewTransfer = Omit<TransferRow, "failureReason"> & { failureReason?: null };

/**
 * Inserts a new transfer with whatever starts it (`start`: its first status and the events it
 * emits) in one statement — one round trip instead of a transaction of five on the path a customer
 * waits on. Undefined when a transfer with the same user and idempotency key exists already (a
 * concurrent request won the insert): then nothing else is written either, and the caller answers
 * as that request's retry would.
 */
export async function insertTransfer(
  db: SqlExecutor,
  data: NewTransfer,
  start: (store: SagaStore, transfer: TransferState) => Promise<void>,
): Promise<{ transfer: TransferRow; events: Event[] } | undefined> {
  const { changes, events } = await collectStart(data, start);
  // unnest WITH ORDINALITY keeps the order of the statuses and of the events (the outbox's seq,
  // assigned row by row, is the order the relay publishes in).
  const rows = await db.$queryRawUnsafe<TransferRow[]>(
    `WITH t AS (
       INSERT INTO transfer (id, user_id, from_account_id, from_masked_number, to_account_id, to_user_id, to_masked_number,
                             amount_minor, currency, note, status, idempotency_key, request_hash, request_device_id,
                             request_device_proven, session_device_id, correlation_id, step, step_attempts, step_deadline_at,
                             created_at, updated_at)
       VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8::bigint, $9, $10, $11::"TransferStatus", $12, $13, $14, $15, $16, $17,
               $18::"SagaStep", $19, $20::timestamptz, $21::timestamptz, $22::timestamptz)
       ON CONFLICT (user_id, idempotency_key) DO NOTHING
       RETURNING *
     ), changes AS (
       INSERT INTO transfer_status_change (transfer_id, status, reason, changed_at)
       SELECT t.id, c.status::"TransferStatus", c.reason, c.at
         FROM t, unnest($23::text[], $24::text[], $25::timestamptz[]) WITH ORDINALITY AS c(status, reason, at, n) ORDER BY c.n
     ), outbox AS (
       INSERT INTO outbox_event (id, subject, type, payload)
       ${outboxRowsSelect(26, "t")}
     )
     SELECT ${TRANSFER_COLUMNS} FROM t`,
    data.id,
    data.userId,
    data.fromAccountId,
    data.fromMaskedNumber,
    data.toAccountId,
    data.toUserId,
    data.toMaskedNumber,
    data.amountMinor.toString(),
    data.currency,
    data.note,
    data.status,
    data.idempotencyKey,
    data.requestHash,
    data.requestDeviceId,
    data.requestDeviceProven,
    data.sessionDeviceId,
    data.correlationId,
    data.step,
    data.stepAttempts,
    data.stepDeadlineAt?.toISOString() ?? null,
    data.createdAt.toISOString(),
    data.updatedAt.toISOString(),
    changes.map((change) => change.status),
    changes.map((change) => change.reason),
    changes.map((change) => change.at.toISOString()),
    ...outboxRowsParameters(events),
  );
  return rows[0] && { transfer: rows[0], events };
}

/** What a new transfer's start records and emits, collected by a store that writes nothing (insertTransfer writes it). */
async function collectStart(data: NewTransfer, start: (store: SagaStore, transfer: TransferState) => Promise<void>) {
  const changes: Array<{ status: TransferStatus; reason: string | null; at: Date }> = [];
  const events: Event[] = [];
  await start(
    {
      lockTransfer: () => Promise.reject(new Error("a transfer being inserted has nothing to lock yet")),
      update: () => Promise.reject(new Error("a transfer being inserted is written whole")),
      async recordStatus(transferId, status, reason, at) {
        if (transferId !== data.id) throw new Error("a new transfer's start records only its own statuses");
        changes.push({ status, reason, at });
      },
      async emit(type, eventData) {
        events.push(createEvent(type, eventData));
      },
    },
    toState({ ...data, failureReason: null }),
  );
  return { changes, events };
}

/** A status change as a transfer's history reports it. */
export type StatusChangeRow = Pick<Awaited<ReturnType<Tx["transferStatusChange"]["findUniqueOrThrow"]>>, "status" | "reason" | "changedAt">;

/**
 * A transfer and its status history, oldest first, in one statement (one snapshot): what
 * `transfer(id)` answers, a subscription's snapshot among others. Through Prisma it was two
 * queries (the row, then the history by DataLoader), each planned again on every call.
 */
export async function findTransferWithHistory(
  sql: SqlExecutor,
  id: string,
): Promise<{ transfer: TransferRow; history: StatusChangeRow[] } | null> {
  const rows = await sql.$queryRawUnsafe<
    Array<TransferRow & { history: Array<{ status: TransferStatus; reason: string | null; atMs: number }> }>
  >(
    `SELECT ${TRANSFER_COLUMNS},
            (SELECT coalesce(json_agg(json_build_object('status', c.status, 'reason', c.reason,
                                                        'atMs', (extract(epoch FROM c.changed_at) * 1000)::bigint) ORDER BY c.seq), '[]'::json)
               FROM transfer_status_change c WHERE c.transfer_id = transfer.id) AS history
       FROM transfer WHERE id = $1::uuid`,
    id,
  );
  const row = rows[0];
  if (!row) return null;
  const { history, ...transfer } = row;
  return {
    transfer: transfer as TransferRow,
    history: history.map((change) => ({ status: change.status, reason: change.reason, changedAt: new Date(change.atMs) })),
  };
}

/** The transfer a user created under an idempotency key, if any. */
export async function findTransferByKey(db: Db, userId: string, idempotencyKey: string): Promise<TransferRow | null> {
  return db.transfer.findUnique({ where: { userId_idempotencyKey: { userId, idempotencyKey } } });
}

/** The (createdAt, id) keyset condition: rows strictly older than the cursor. */
function olderThan(after: { createdAt: Date; id: string } | undefined): Prisma.TransferWhereInput {
  return after ? { OR: [{ createdAt: { lt: after.createdAt } }, { createdAt: after.createdAt, id: { lt: after.id } }] } : {};
}

/**
 * A user's transfers in one direction, newest first, after a (createdAt, id) cursor, `take` rows at
 * most: those they sent (by the (user_id, created_at, id) index), or the COMPLETED ones paid to them
 * (by the (to_user_id, status, created_at, id) index).
 */
export async function findTransfersOf(
  db: Db,
  userId: string,
  direction: "SENT" | "RECEIVED",
  after: { createdAt: Date; id: string } | undefined,
  take: number,
): Promise<TransferRow[]> {
  const side: Prisma.TransferWhereInput = direction === "SENT" ? { userId } : { toUserId: userId, status: "COMPLETED" };
  return db.transfer.findMany({
    where: { ...side, ...olderThan(after) },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take,
  });
}

/**
 * The status histories of many transfers in one query, in the order asked: a page of transfers
 * with their histories costs two queries, not one per transfer.
 */
export async function findHistories(db: Db, transferIds: readonly string[]) {
  const rows = await db.transferStatusChange.findMany({ where: { transferId: { in: [...transferIds] } }, orderBy: { seq: "asc" } });
  const byTransfer = new Map(transferIds.map((id) => [id, [] as typeof rows]));
  for (const row of rows) byTransfer.get(row.transferId)?.push(row);
  return transferIds.map((id) => byTransfer.get(id)!);
}

/** An account as the directory knows it. */
export interface DirectoryEntry {
  accountId: string;
  userId: string;
  currency: string;
  maskedNumber: string;
  numberBlindIndex: string;
}

/**
 * What initiate reads before it decides, in one statement: whether the user already has a transfer
 * under this idempotency key (its id), and the directory entries of the source (by id) and the
 * destination (by its number's blind index).
 */
export async function findKeyAndEnds(
  db: SqlExecutor,
  request: { userId: string; idempotencyKey: string; fromAccountId: string; toBlindIndex: string },
): Promise<{ replayId: string | null; ends: DirectoryEntry[] }> {
  const rows = await db.$queryRawUnsafe<Array<Partial<DirectoryEntry> & { replayId: string | null }>>(
    `SELECT k.replay_id AS "replayId", d.account_id AS "accountId", d.user_id AS "userId", d.currency,
            d.masked_number AS "maskedNumber", d.number_blind_index AS "numberBlindIndex"
       FROM (SELECT (SELECT id::text FROM transfer WHERE user_id = $1 AND idempotency_key = $2) AS replay_id) AS k
       LEFT JOIN account_directory d ON d.account_id = $3 OR d.number_blind_index = $4`,
    request.userId,
    request.idempotencyKey,
    request.fromAccountId,
    request.toBlindIndex,
  );
  const ends = rows.filter((row): row is DirectoryEntry & { replayId: string | null } => row.accountId != null);
  return {
    replayId: rows[0]?.replayId ?? null,
    ends: ends.map(({ replayId: _, ...entry }) => entry),
  };
}

/** An account in the directory (from account.created); a repeated event changes nothing. */
export async function upsertDirectoryEntry(
  tx: SqlExecutor,
  entry: { accountId: string; userId: string; currency: string; maskedNumber: string; numberBlindIndex: string },
): Promise<void> {
  const { accountId, userId, currency, maskedNumber, numberBlindIndex } = entry;
  await tx.$executeRawUnsafe(
    `INSERT INTO account_directory (account_id, user_id, currency, masked_number, number_blind_index) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (account_id) DO NOTHING`,
    accountId,
    userId,
    currency,
    maskedNumber,
    numberBlindIndex,
  );
}

/** Transfers by status, for the gauge operators watch. */
export async function countTransfersByStatus(db: Db): Promise<Array<{ status: string; n: number }>> {
  return (await db.$queryRawUnsafe(`SELECT status::text AS status, count(*)::int AS n FROM transfer GROUP BY status`)) as Array<{
    status: string;
    n: number;
  }>;
}

export type { Db, Tx };
