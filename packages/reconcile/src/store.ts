/**
 * The rows the rules compare, read from each service's own database with plain SQL (the
 * reconciliation is an operator's tool with read access to all of them; no service reads another's
 * database). Everything is read in pages of bounded size, keyed by an indexed column, so memory
 * stays flat however long the history is.
 */
import type pg from "pg";
import type { SqlExecutor } from "@vaultpay/events";
import { isUuid } from "@vaultpay/kit";
import type {
  DebitEvent,
  Decision,
  Movement,
  MovementKind,
  OutboxRow,
  OutboxService,
  ReconciliationRefund,
  TransferRecord,
  TransferStatus,
} from "./model.ts";
import { RECONCILIATION_REFUND_REASON } from "./rules.ts";

/** Rows (or transfer ids) read per query. */
export const PAGE_SIZE = 500;

/** A pg client as the events package's SQL port, so appendToOutbox writes the outbox row as the services do. */
export function sqlExecutor(client: pg.ClientBase): SqlExecutor {
  return {
    $executeRawUnsafe: async (query, ...values) => (await client.query(query, values)).rowCount ?? 0,
    $queryRawUnsafe: async <T>(query: string, ...values: unknown[]) => (await client.query(query, values)).rows as T,
  };
}

interface TransferRow {
  id: string;
  status: TransferStatus;
  from_account_id: string;
  to_account_id: string;
  amount_minor: string;
  updated_at: Date;
}

const TRANSFER_COLUMNS = `id::text, status::text, from_account_id, to_account_id, amount_minor::text, updated_at`;

function toTransfer(row: TransferRow): TransferRecord {
  return {
    id: row.id,
    status: row.status,
    fromAccountId: row.from_account_id,
    toAccountId: row.to_account_id,
    amountMinor: BigInt(row.amount_minor),
    updatedAt: row.updated_at,
  };
}

/** Every transfer of the transactions service, a page at a time, in id order. */
export async function* transferPages(transactions: pg.ClientBase, pageSize = PAGE_SIZE): AsyncGenerator<TransferRecord[]> {
  let after = "00000000-0000-0000-0000-000000000000";
  for (;;) {
    const { rows } = await transactions.query<TransferRow>(
      `SELECT ${TRANSFER_COLUMNS} FROM transfer WHERE id > $1::uuid ORDER BY transfer.id LIMIT $2`,
      [after, pageSize],
    );
    if (rows.length === 0) return;
    yield rows.map(toTransfer);
    after = rows[rows.length - 1]!.id;
    if (rows.length < pageSize) return;
  }
}

/** The transfers among `ids` that transactions knows, by id. */
export async function loadTransfers(transactions: pg.ClientBase, ids: readonly string[]): Promise<Map<string, TransferRecord>> {
  const uuids = ids.filter(isUuid);
  if (uuids.length === 0) return new Map();
  const { rows } = await transactions.query<TransferRow>(`SELECT ${TRANSFER_COLUMNS} FROM transfer WHERE id = ANY($1::uuid[])`, [uuids]);
  return new Map(rows.map((row) => [row.id, toTransfer(row)]));
}

/**
 * Every transfer id accounts holds a movement or a decision of, a page at a time. Both halves
 * walk an index that starts with transfer_id (journal's unique key, saga_decision's primary key).
 */
export async function* accountsTransferIdPages(accounts: pg.ClientBase, pageSize = PAGE_SIZE): AsyncGenerator<string[]> {
  let after = "";
  for (;;) {
    const { rows } = await accounts.query<{ transfer_id: string }>(
      `SELECT transfer_id FROM (
         (SELECT DISTINCT transfer_id FROM saga_decision WHERE transfer_id > $1 ORDER BY transfer_id LIMIT $2)
         UNION
         (SELECT DISTINCT transfer_id FROM journal_entry WHERE transfer_id > $1 ORDER BY transfer_id LIMIT $2)
       ) ids ORDER BY transfer_id LIMIT $2`,
      [after, pageSize],
    );
    if (rows.length === 0) return;
    yield rows.map((row) => row.transfer_id);
    after = rows[rows.length - 1]!.transfer_id;
    if (rows.length < pageSize) return;
  }
}

/** Accounts' movements and decisions of the given transfers. */
export async function loadAccountsEvidence(
  accounts: pg.ClientBase,
  transferIds: readonly string[],
): Promise<{ movements: Movement[]; decisions: Decision[] }> {
  if (transferIds.length === 0) return { movements: [], decisions: [] };
  const journal = await accounts.query<{
    transfer_id: string;
    kind: MovementKind;
    account_id: string;
    amount_minor: string;
    created_at: Date;
  }>(
    `SELECT transfer_id, kind::text, account_id::text, amount_minor::text, created_at FROM journal_entry
      WHERE transfer_id = ANY($1::text[]) AND kind IN ('DEBIT', 'CREDIT', 'REFUND')`,
    [transferIds],
  );
  const decided = await accounts.query<{
    transfer_id: string;
    step: MovementKind;
    account_id: string;
    amount_minor: string;
    rejection: string | null;
    decided_at: Date;
  }>(
    `SELECT transfer_id, step::text, account_id, amount_minor::text, rejection, decided_at FROM saga_decision WHERE transfer_id = ANY($1::text[])`,
    [transferIds],
  );
  return {
    movements: journal.rows.map((row) => {
      const signed = BigInt(row.amount_minor);
      return {
        transferId: row.transfer_id,
        kind: row.kind,
        accountId: row.account_id,
        amountMinor: signed < 0n ? -signed : signed,
        at: row.created_at,
      };
    }),
    decisions: decided.rows.map((row) => ({
      transferId: row.transfer_id,
      step: row.step,
      accountId: row.account_id,
      amountMinor: BigInt(row.amount_minor),
      rejection: row.rejection,
      at: row.decided_at,
    })),
  };
}

/**
 * Refund requests the reconciliation wrote into transactions' outbox for these transfers. The
 * outbox has no index on the payload, so this scans it: only called for transfers transactions
 * does not know, which a healthy platform has none of.
 */
export async function loadReconciliationRefunds(
  transactions: pg.ClientBase,
  transferIds: readonly string[],
): Promise<ReconciliationRefund[]> {
  if (transferIds.length === 0) return [];
  const { rows } = await transactions.query<{ id: string; transfer_id: string; created_at: Date }>(
    `SELECT id::text, payload->'data'->>'transferId' AS transfer_id, created_at FROM outbox_event
      WHERE type = 'transaction.refund.requested' AND payload->'data'->>'transferId' = ANY($1::text[])
        AND payload->'data'->>'reason' = $2`,
    [transferIds, RECONCILIATION_REFUND_REASON],
  );
  return rows.map((row) => ({ transferId: row.transfer_id, eventId: row.id, at: row.created_at }));
}

/** Accounts' account.debited events of these transfers (a scan too; same callers as above). */
export async function loadDebitEvents(accounts: pg.ClientBase, transferIds: readonly string[]): Promise<Map<string, DebitEvent>> {
  if (transferIds.length === 0) return new Map();
  const { rows } = await accounts.query<{ id: string; transfer_id: string; correlation_id: string }>(
    `SELECT id::text, payload->'data'->>'transferId' AS transfer_id, payload->>'correlationId' AS correlation_id FROM outbox_event
      WHERE type = 'account.debited' AND payload->'data'->>'transferId' = ANY($1::text[]) ORDER BY seq`,
    [transferIds],
  );
  return new Map(rows.map((row) => [row.transfer_id, { eventId: row.id, correlationId: row.correlation_id }]));
}

/**
 * One service's outbox rows created before `before`, a page at a time, in seq order. The order
 * names the table's column: a bare `seq` is the output column `seq::text`, whose text order ("1",
 * "10", "100", "2"…) made each page's last row a bad cursor and skipped rows once the outbox
 * held more than a page (transferPages' `transfer.id` likewise, whose text and uuid orders agree
 * only under some collations).
 */
export async function* outboxPages(
  client: pg.ClientBase,
  service: OutboxService,
  before: Date,
  pageSize = PAGE_SIZE,
): AsyncGenerator<OutboxRow[]> {
  let after = "0";
  for (;;) {
    const { rows } = await client.query<{
      seq: string;
      id: string;
      type: string;
      subject: string;
      payload: unknown;
      created_at: Date;
      published_at: Date | null;
    }>(
      `SELECT seq::text, id::text, type, subject, payload, created_at, published_at FROM outbox_event
        WHERE seq > $1::bigint AND created_at <= $2 ORDER BY outbox_event.seq LIMIT $3`,
      [after, before, pageSize],
    );
    if (rows.length === 0) return;
    yield rows.map((row) => ({
      service,
      id: row.id,
      type: row.type,
      subject: row.subject,
      payload: row.payload,
      createdAt: row.created_at,
      publishedAt: row.published_at,
    }));
    after = rows[rows.length - 1]!.seq;
    if (rows.length < pageSize) return;
  }
}

/** The ids among `eventIds` the audit log holds (lower-case, as audit stores them). */
export async function loadAuditedIds(audit: pg.ClientBase, eventIds: readonly string[]): Promise<Set<string>> {
  if (eventIds.length === 0) return new Set();
  const { rows } = await audit.query<{ event_id: string }>(`SELECT event_id::text FROM audit_record WHERE event_id = ANY($1::uuid[])`, [
    eventIds,
  ]);
  return new Set(rows.map((row) => row.event_id));
}

/**
 * Deletes these published rows from a service's outbox (`--prune`); how many went. A row the relay
 * has not published is never deleted, whatever the caller passed.
 */
export async function deleteOutboxRows(client: pg.ClientBase, eventIds: readonly string[]): Promise<number> {
  if (eventIds.length === 0) return 0;
  const { rowCount } = await client.query(`DELETE FROM outbox_event WHERE id = ANY($1::uuid[]) AND published_at IS NOT NULL`, [eventIds]);
  return rowCount ?? 0;
}

/** The longest stretch of event time one statement of `deleteProcessedEvents` covers. */
export const PROCESSED_EVENT_WINDOW_MS = 10 * 60_000;

/**
 * The smallest uuid v7 made at `ms` or later: v7 ids begin with their 48-bit Unix time in
 * milliseconds, and PostgreSQL orders uuids by their bytes, so every id made before `ms` sorts
 * below it.
 */
export function uuidV7Floor(ms: number): string {
  const hex = Math.min(Math.max(0, Math.floor(ms)), 2 ** 48 - 1)
    .toString(16)
    .padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8)}-0000-0000-000000000000`;
}

/** The time a uuid v7 was made (its first 48 bits). */
function uuidV7Ms(id: string): number {
  return Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

/**
 * Deletes a service's processed_event rows of events made and handled before `before`
 * (`--prune`); how many went. Event ids are uuid v7, so per consumer the primary key
 * (consumer, event_id) holds the rows in the order the events were made: each consumer's rows go
 * from its oldest id up, in windows of PROCESSED_EVENT_WINDOW_MS of event time, one statement each,
 * so none deletes more than ten minutes of a busy platform's events, and a quiet stretch is jumped
 * over (the next window starts at the next id there is). A row handled after `before` (an old
 * event republished lately) stays until it is that old. The consumers are found by a walk of the
 * same key (one lookup per consumer, not a scan of the table).
 */
export async function deleteProcessedEvents(client: pg.ClientBase, before: Date): Promise<number> {
  const { rows: consumers } = await client.query<{ consumer: string }>(
    `WITH RECURSIVE c AS (
       SELECT min(consumer) AS consumer FROM processed_event
       UNION ALL
       SELECT (SELECT min(consumer) FROM processed_event WHERE consumer > c.consumer) FROM c WHERE c.consumer IS NOT NULL)
     SELECT consumer FROM c WHERE consumer IS NOT NULL`,
  );
  const end = before.getTime();
  let deleted = 0;
  for (const { consumer } of consumers) {
    const nextIdFrom = async (ms: number) => {
      const { rows } = await client.query<{ id: string }>(
        `SELECT event_id::text AS id FROM processed_event WHERE consumer = $1 AND event_id >= $2::uuid AND event_id < $3::uuid
         ORDER BY event_id LIMIT 1`,
        [consumer, uuidV7Floor(ms), uuidV7Floor(end)],
      );
      return rows[0] && uuidV7Ms(rows[0].id);
    };
    for (let from = await nextIdFrom(0); from !== undefined; from = await nextIdFrom(from + PROCESSED_EVENT_WINDOW_MS)) {
      const to = Math.min(from + PROCESSED_EVENT_WINDOW_MS, end);
      const { rowCount } = await client.query(
        `DELETE FROM processed_event WHERE consumer = $1 AND event_id >= $2::uuid AND event_id < $3::uuid AND processed_at < $4`,
        [consumer, uuidV7Floor(from), uuidV7Floor(to), before],
      );
      deleted += rowCount ?? 0;
    }
  }
  return deleted;
}

/** Where the money half of the last run left off (table reconciliation_checkpoint, in transactions' database). */
export interface MoneyCheckpoint {
  /** Every transfer whose evidence was all older than this was judged (or is in openTransferIds). */
  checkedBefore: Date;
  /** Transfer ids (of either service) with a finding, or not yet judged, at that run. */
  openTransferIds: string[];
  /** When a run last read the whole history. */
  fullAt: Date | null;
}

const CHECKPOINT_NAME = "money";

export async function loadMoneyCheckpoint(transactions: pg.ClientBase): Promise<MoneyCheckpoint | undefined> {
  const { rows } = await transactions.query<{ checked_before: Date; open_transfer_ids: string[] | null; full_at: Date | null }>(
    `SELECT checked_before, open_transfer_ids, full_at FROM reconciliation_checkpoint WHERE name = $1`,
    [CHECKPOINT_NAME],
  );
  const row = rows[0];
  return row && { checkedBefore: row.checked_before, openTransferIds: row.open_transfer_ids ?? [], fullAt: row.full_at };
}

/**
 * Writes the next checkpoint, only over the one this run started from: a run that overlapped
 * another (which moved it first) leaves that one's, whose reading covers the same or later ground.
 * The time of a full reading is kept whichever run wins. False when another run's stayed.
 */
export async function saveMoneyCheckpoint(
  transactions: pg.ClientBase,
  startedFrom: MoneyCheckpoint | undefined,
  next: Omit<MoneyCheckpoint, "fullAt">,
  fullAt: Date | undefined,
): Promise<boolean> {
  const values = [CHECKPOINT_NAME, next.checkedBefore, next.openTransferIds, fullAt ?? null];
  const { rowCount } = startedFrom
    ? await transactions.query(
        `UPDATE reconciliation_checkpoint
            SET checked_before = $2, open_transfer_ids = $3::text[], full_at = COALESCE($4, full_at), updated_at = now()
          WHERE name = $1 AND checked_before = $5`,
        [...values, startedFrom.checkedBefore],
      )
    : await transactions.query(
        `INSERT INTO reconciliation_checkpoint (name, checked_before, open_transfer_ids, full_at) VALUES ($1, $2, $3::text[], $4)
         ON CONFLICT (name) DO NOTHING`,
        values,
      );
  if (rowCount === 0 && fullAt) {
    await transactions.query(`UPDATE reconciliation_checkpoint SET full_at = GREATEST(full_at, $2) WHERE name = $1`, [
      CHECKPOINT_NAME,
      fullAt,
    ]);
  }
  return rowCount === 1;
}

/**
 * The transfer ids a run since `since` judges, gathered without bringing them into memory: a
 * temporary table of this connection (deduplicated by its key) filled with every transfer whose
 * status changed since then, every transfer not ended, the ids left open, and every transfer id
 * accounts journalled a movement of since then (read in pages by seq, from the first at or after
 * `since`: both tables are append-only in time order, and a BRIN index finds where that starts).
 * Returns how many there are; candidatePages reads them.
 */
export async function gatherCandidates(
  transactions: pg.ClientBase,
  accounts: pg.ClientBase,
  since: Date,
  openTransferIds: readonly string[],
  pageSize = PAGE_SIZE,
): Promise<number> {
  await transactions.query(`CREATE TEMP TABLE IF NOT EXISTS reconcile_candidate (transfer_id text PRIMARY KEY)`);
  await transactions.query(`TRUNCATE reconcile_candidate`);
  await transactions.query(
    `INSERT INTO reconcile_candidate (transfer_id)
       SELECT transfer_id::text FROM transfer_status_change WHERE changed_at >= $1
       UNION SELECT id::text FROM transfer WHERE step_deadline_at IS NOT NULL
       UNION SELECT unnest($2::text[])
     ON CONFLICT DO NOTHING`,
    [since, openTransferIds],
  );
  const first = await accounts.query<{ seq: string | null }>(`SELECT min(seq)::text AS seq FROM journal_entry WHERE created_at >= $1`, [
    since,
  ]);
  let after = first.rows[0]?.seq ? (BigInt(first.rows[0].seq) - 1n).toString() : undefined;
  while (after !== undefined) {
    const { rows } = await accounts.query<{ seq: string; transfer_id: string | null }>(
      `SELECT seq::text, transfer_id FROM journal_entry WHERE seq > $1::bigint ORDER BY journal_entry.seq LIMIT $2`,
      [after, pageSize],
    );
    const ids = rows.flatMap((row) => (row.transfer_id === null ? [] : [row.transfer_id]));
    if (ids.length > 0) await transactions.query(`INSERT INTO reconcile_candidate SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [ids]);
    after = rows.length === pageSize ? rows[rows.length - 1]!.seq : undefined;
  }
  const { rows } = await transactions.query<{ n: number }>(`SELECT count(*)::int AS n FROM reconcile_candidate`);
  return rows[0]!.n;
}

/** The ids gatherCandidates gathered, a page at a time. */
export async function* candidatePages(transactions: pg.ClientBase, pageSize = PAGE_SIZE): AsyncGenerator<string[]> {
  let after = "";
  for (;;) {
    const { rows } = await transactions.query<{ transfer_id: string }>(
      `SELECT transfer_id FROM reconcile_candidate WHERE transfer_id > $1 ORDER BY reconcile_candidate.transfer_id LIMIT $2`,
      [after, pageSize],
    );
    if (rows.length === 0) return;
    yield rows.map((row) => row.transfer_id);
    after = rows[rows.length - 1]!.transfer_id;
    if (rows.length < pageSize) return;
  }
}
