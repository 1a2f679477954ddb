/**
 * The reconciliation run: read the services' rows (store.ts), judge them (rules.ts), and with
 * `repair` fix what needs no person. The money half reads what changed since the last run's
 * checkpoint (reconciliation_checkpoint in transactions' database: where it left off, and the
 * transfer ids it left open), or with `full` (and on the first run) the whole history; every
 * outbox row still held is read, which `prune` keeps to what came since the last run (and it
 * deletes the consumers' processed_event rows of events from before `processedEventsBefore`). Repairs:
 *  - an event missing from audit is published again under a new Nats-Msg-Id (the stream may still
 *    hold the original id inside its duplicate window) with the same envelope and event id, so
 *    every consumer that applied it finds it in processed_event and skips it, and audit appends it;
 *  - an orphan debit is refunded through the normal path: a `transaction.refund.requested` in
 *    transactions' outbox, published by its relay; accounts decides a refund once per transfer
 *    (saga_decision), and transactions ignores the answer for a transfer it does not know.
 * Everything else is reported for a person.
 */
import pg from "pg";
import { appendToOutbox, connectJetStream, createEvent, eventHeaders, parseEvent, type JetStreamLink } from "@vaultpay/events";
import type { Logger } from "@vaultpay/kit";
import type { ServiceName } from "@vaultpay/migrate";
import {
  OUTBOX_SERVICES,
  type Finding,
  type OutboxService,
  type ReconcileClock,
  type Repair,
  type TransferEvidence,
  type TransferRecord,
} from "./model.ts";
import { RECONCILIATION_REFUND_REASON, isSettled, judgeLater, judgeOutbox, judgeTransfer, prunableOutboxIds } from "./rules.ts";
import {
  PAGE_SIZE,
  accountsTransferIdPages,
  candidatePages,
  deleteOutboxRows,
  deleteProcessedEvents,
  gatherCandidates,
  loadAccountsEvidence,
  loadAuditedIds,
  loadDebitEvents,
  loadReconciliationRefunds,
  loadMoneyCheckpoint,
  loadTransfers,
  outboxPages,
  saveMoneyCheckpoint,
  sqlExecutor,
  transferPages,
  type MoneyCheckpoint,
} from "./store.ts";

/**
 * The default grace period. A saga in flight changes its transfer at least every 8 step timeouts
 * (the deadline's back-off cap: 80 s with SAGA_STEP_TIMEOUT_MS=10000), and relays publish within
 * seconds; 5 minutes leaves room for a service restart on top.
 */
export const DEFAULT_GRACE_MS = 5 * 60_000;
/** Findings kept per run; past it the report says it was cut and a run after the repairs finds the rest. */
export const MAX_FINDINGS = 10_000;
/** How far before its checkpoint a run starts reading (sinceCheckpoint). */
export const CHECKPOINT_OVERLAP_MS = 5_000;
const PUBLISH_TIMEOUT_MS = 5_000;

export interface ReconcileOptions {
  databaseUrls: Record<ServiceName, string>;
  graceMs?: number;
  repair?: boolean;
  /**
   * Delete the outbox rows the run found published and held by the audit log, past the grace
   * period (prunableOutboxIds): the outboxes then hold what is in flight or wrong, and each run
   * reads only what came since the last one. Skipped when the findings were cut (maxFindings).
   */
  prune?: boolean;
  /**
   * With `prune`: delete every service's processed_event rows of events made and handled before
   * this time (the CLI: now less processedEventKeepMs, how long a consumer needs them). Left out,
   * they are all kept.
   */
  processedEventsBefore?: Date;
  /**
   * Read the whole history, not only what changed since the last run's checkpoint (see
   * reconciliation_checkpoint). A run without a checkpoint reads it all anyway.
   */
  full?: boolean;
  /** Needed only when an event has to be republished. */
  natsUrl?: string;
  logger: Logger;
  now?: Date;
  pageSize?: number;
  maxFindings?: number;
}

export interface RepairOutcome {
  status: "repaired" | "skipped" | "failed";
  detail: string;
}

export interface ReconciledFinding extends Finding {
  repairOutcome?: RepairOutcome;
}

export interface ReconcileReport {
  startedAt: Date;
  graceMs: number;
  repair: boolean;
  prune: boolean;
  /** Whether the money half read the whole history; otherwise what changed since `since`. */
  full: boolean;
  since: Date | null;
  /** Transfer ids the money half judged (known to transactions or not). */
  transfersJudged: number;
  /** Outbox rows deleted by --prune, by service (services with none are left out). */
  pruned: Partial<Record<OutboxService, number>>;
  /** processed_event rows deleted by --prune, by service, and the time they were older than (null: none deleted, all kept). */
  prunedProcessed: Partial<Record<ServiceName, number>>;
  processedBefore: Date | null;
  findings: ReconciledFinding[];
  /** True when more than maxFindings were found; the rest show in the next run. */
  truncated: boolean;
  /** Findings not repaired by this run: a person (or a run with --repair) has to act. */
  unresolved: number;
}

type Clients = Record<ServiceName, pg.Client>;

export async function reconcile(options: ReconcileOptions): Promise<ReconcileReport> {
  const startedAt = options.now ?? new Date();
  const clock: ReconcileClock = { now: startedAt, graceMs: options.graceMs ?? DEFAULT_GRACE_MS };
  const maxFindings = options.maxFindings ?? MAX_FINDINGS;
  const clients = await connectAll(options.databaseUrls);
  const findings: ReconciledFinding[] = [];
  let truncated = false;
  const add = (found: Finding[]): boolean => {
    for (const finding of found) {
      if (findings.length >= maxFindings) {
        truncated = true;
        return false;
      }
      findings.push(finding);
    }
    return true;
  };
  const pruned: Partial<Record<OutboxService, number>> = {};
  const prunedProcessed: Partial<Record<ServiceName, number>> = {};
  const processedBefore = (options.prune && options.processedEventsBefore) || null;
  const pageSize = options.pageSize ?? PAGE_SIZE;
  const judge = new MoneyJudge(clients, clock, add);
  let checkpoint: MoneyCheckpoint | undefined;
  let full = true;
  try {
    checkpoint = await loadMoneyCheckpoint(clients.transactions);
    full = options.full === true || checkpoint === undefined;
    if (full) await findMoneyEverywhere(clients, judge, pageSize);
    else await findMoneySince(clients, judge, pageSize, checkpoint!);
    if (!truncated) {
      const prune = options.prune ? { kept: judge.orphanDebitIds, pruned } : undefined;
      await findUnaudited(clients, clock, pageSize, add, prune);
    }
    // Only a reading that judged everything it meant to moves the checkpoint.
    if (!truncated) {
      await saveMoneyCheckpoint(
        clients.transactions,
        checkpoint,
        { checkedBefore: new Date(startedAt.getTime() - clock.graceMs), openTransferIds: [...judge.open] },
        full ? startedAt : undefined,
      );
    }
    if (processedBefore) {
      for (const [service, client] of Object.entries(clients) as Array<[ServiceName, pg.Client]>) {
        const deleted = await deleteProcessedEvents(client, processedBefore);
        if (deleted > 0) prunedProcessed[service] = deleted;
      }
    }
    if (options.repair) await repairAll(findings, clients, options, startedAt);
  } finally {
    await Promise.all(Object.values(clients).map((client) => client.end().catch(() => undefined)));
  }
  const unresolved = findings.filter((finding) => finding.repairOutcome?.status !== "repaired").length;
  return {
    startedAt,
    graceMs: clock.graceMs,
    repair: options.repair ?? false,
    prune: options.prune ?? false,
    full,
    since: full || !checkpoint ? null : sinceCheckpoint(checkpoint),
    transfersJudged: judge.judged,
    pruned,
    prunedProcessed,
    processedBefore,
    findings,
    truncated,
    unresolved,
  };
}

async function connectAll(urls: Record<ServiceName, string>): Promise<Clients> {
  const clients = {} as Clients;
  try {
    for (const [service, url] of Object.entries(urls) as Array<[ServiceName, string]>) {
      const client = new pg.Client({ connectionString: url, application_name: "vaultpay-reconcile" });
      await client.connect();
      clients[service] = client;
    }
  } catch (error) {
    await Promise.all(Object.values(clients).map((client) => client.end().catch(() => undefined)));
    throw error;
  }
  return clients;
}

/** Judges pages of transfer ids and keeps what the next run needs: ids left open, orphan debits' events, a count. */
class MoneyJudge {
  /** The account.debited events of open transfers transactions does not know (lower-case), which pruning keeps. */
  readonly orphanDebitIds = new Set<string>();
  /** Transfer ids with a finding, or too young to judge and not read again by themselves (judgeLater). */
  readonly open = new Set<string>();
  judged = 0;

  private readonly clients: Clients;
  private readonly clock: ReconcileClock;
  private readonly add: (found: Finding[]) => boolean;

  constructor(clients: Clients, clock: ReconcileClock, add: (found: Finding[]) => boolean) {
    this.clients = clients;
    this.clock = clock;
    this.add = add;
  }

  /** Transfers transactions knows, with what accounts holds of them. False once the findings are cut. */
  async known(transfers: readonly TransferRecord[]): Promise<boolean> {
    if (transfers.length === 0) return true;
    const held = await loadAccountsEvidence(
      this.clients.accounts,
      transfers.map((transfer) => transfer.id),
    );
    for (const transfer of transfers) {
      const evidence: TransferEvidence = {
        transferId: transfer.id,
        transfer,
        movements: held.movements.filter((movement) => movement.transferId === transfer.id),
        decisions: held.decisions.filter((decision) => decision.transferId === transfer.id),
        reconciliationRefunds: [],
      };
      if (!this.judge(evidence).more) return false;
    }
    return true;
  }

  /** Transfer ids accounts holds and transactions does not know. False once the findings are cut. */
  async unknown(ids: readonly string[]): Promise<boolean> {
    if (ids.length === 0) return true;
    const { accounts, transactions } = this.clients;
    const held = await loadAccountsEvidence(accounts, ids);
    const debitEvents = await loadDebitEvents(accounts, ids);
    const refunds = await loadReconciliationRefunds(transactions, ids);
    for (const transferId of ids) {
      const evidence: TransferEvidence = {
        transferId,
        transfer: undefined,
        movements: held.movements.filter((movement) => movement.transferId === transferId),
        decisions: held.decisions.filter((decision) => decision.transferId === transferId),
        reconciliationRefunds: refunds.filter((refund) => refund.transferId === transferId),
        debitEvent: debitEvents.get(transferId),
      };
      const { more, settled } = this.judge(evidence);
      // Kept until the transfer is settled: a refund asked for it joins the debit's correlation id.
      if (evidence.debitEvent && !settled) this.orphanDebitIds.add(evidence.debitEvent.eventId.toLowerCase());
      if (!more) return false;
    }
    return true;
  }

  /** `more`: false once the findings are cut; `settled`: judged, and nothing found. */
  private judge(evidence: TransferEvidence): { more: boolean; settled: boolean } {
    this.judged++;
    const found = judgeTransfer(evidence, this.clock);
    if (found.length > 0 || judgeLater(evidence, this.clock)) this.open.add(evidence.transferId);
    return { more: this.add(found), settled: found.length === 0 && isSettled(evidence, this.clock) };
  }
}

/**
 * The whole history in both directions, each transfer id judged once: every transfer transactions
 * knows with what accounts holds of it, then every transfer id of accounts that transactions does
 * not know.
 */
async function findMoneyEverywhere(clients: Clients, judge: MoneyJudge, pageSize: number): Promise<void> {
  for await (const page of transferPages(clients.transactions, pageSize)) if (!(await judge.known(page))) return;
  for await (const ids of accountsTransferIdPages(clients.accounts, pageSize)) {
    const known = await loadTransfers(clients.transactions, ids);
    if (!(await judge.unknown(ids.filter((id) => !known.has(id.toLowerCase()))))) return;
  }
}

/**
 * What may have changed since the checkpoint (gatherCandidates: status changes and movements since
 * then, unfinished transfers, the ids it left open), each transfer id judged once, known or not.
 */
async function findMoneySince(clients: Clients, judge: MoneyJudge, pageSize: number, checkpoint: MoneyCheckpoint): Promise<void> {
  const since = sinceCheckpoint(checkpoint);
  await gatherCandidates(clients.transactions, clients.accounts, since, checkpoint.openTransferIds, pageSize);
  for await (const ids of candidatePages(clients.transactions, pageSize)) {
    const known = await loadTransfers(clients.transactions, ids);
    if (!(await judge.known([...known.values()]))) return;
    if (!(await judge.unknown(ids.filter((id) => !known.has(id.toLowerCase()))))) return;
  }
}

/**
 * Where a run after this checkpoint starts reading: a little before it, since a transfer's row is
 * stamped by PostgreSQL and its status change by the service, a few milliseconds apart.
 */
export function sinceCheckpoint(checkpoint: Pick<MoneyCheckpoint, "checkedBefore">): Date {
  return new Date(checkpoint.checkedBefore.getTime() - CHECKPOINT_OVERLAP_MS);
}

/**
 * Every outbox row of every service that emits events, against the audit log. With `prune`, the
 * rows of each page that prunableOutboxIds picks are deleted behind the scan (pages follow seq, so
 * deleting rows already read moves none still to come).
 */
async function findUnaudited(
  clients: Clients,
  clock: ReconcileClock,
  pageSize: number,
  add: (found: Finding[]) => boolean,
  prune: { kept: ReadonlySet<string>; pruned: Partial<Record<OutboxService, number>> } | undefined,
): Promise<void> {
  const before = new Date(clock.now.getTime() - clock.graceMs);
  for (const service of OUTBOX_SERVICES) {
    for await (const rows of outboxPages(clients[service], service, before, pageSize)) {
      const audited = await loadAuditedIds(
        clients.audit,
        rows.filter((row) => row.publishedAt !== null).map((row) => row.id),
      );
      if (!add(judgeOutbox(rows, audited, clock))) return;
      if (prune) {
        const deleted = await deleteOutboxRows(clients[service], prunableOutboxIds(rows, audited, clock, prune.kept));
        if (deleted > 0) prune.pruned[service] = (prune.pruned[service] ?? 0) + deleted;
      }
    }
  }
}

async function repairAll(findings: ReconciledFinding[], clients: Clients, options: ReconcileOptions, startedAt: Date): Promise<void> {
  let nats: JetStreamLink | undefined;
  try {
    for (const finding of findings) {
      if (!finding.repair) continue;
      try {
        if (finding.repair.kind === "refund") {
          finding.repairOutcome = await requestRefund(clients.transactions, finding.repair);
        } else {
          if (!options.natsUrl) throw new Error("NATS_URL is needed to republish events");
          nats ??= await connectJetStream(options.natsUrl, "reconcile", options.logger, false);
          finding.repairOutcome = await republish(nats, finding.repair, startedAt);
        }
      } catch (error) {
        finding.repairOutcome = { status: "failed", detail: error instanceof Error ? error.message : String(error) };
      }
    }
  } finally {
    await nats?.nc.drain().catch(() => undefined);
  }
}

/**
 * Writes the refund request into transactions' outbox, in a transaction that first checks, under
 * a lock per transfer, that the transfer is still unknown and that no earlier run (or a
 * concurrent one) already asked: two runs never ask twice, and accounts would refund once anyway.
 */
async function requestRefund(transactions: pg.Client, repair: Extract<Repair, { kind: "refund" }>): Promise<RepairOutcome> {
  const { transferId } = repair;
  await transactions.query("BEGIN");
  try {
    await transactions.query(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`reconcile-refund:${transferId}`]);
    if ((await loadTransfers(transactions, [transferId])).size > 0) {
      await transactions.query("ROLLBACK");
      return { status: "skipped", detail: "the transfer exists in transactions now; not refunded" };
    }
    const earlier = await loadReconciliationRefunds(transactions, [transferId]);
    if (earlier.length > 0) {
      await transactions.query("ROLLBACK");
      return { status: "repaired", detail: `refund already requested (event ${earlier[0]!.eventId})` };
    }
    const context = repair.debitEvent
      ? { correlationId: repair.debitEvent.correlationId, causationId: repair.debitEvent.eventId, actor: {} }
      : undefined;
    const event = createEvent(
      "transaction.refund.requested",
      { transferId, fromAccountId: repair.accountId, amountMinor: repair.amountMinor.toString(), reason: RECONCILIATION_REFUND_REASON },
      context,
    );
    await appendToOutbox(sqlExecutor(transactions), event);
    await transactions.query("COMMIT");
    return {
      status: "repaired",
      detail: `refund requested (event ${event.id}, correlation ${event.correlationId}); the transactions relay publishes it`,
    };
  } catch (error) {
    await transactions.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
}

/** Publishes the stored envelope again, unchanged, under a Nats-Msg-Id of this run. */
async function republish(nats: JetStreamLink, repair: Extract<Repair, { kind: "republish" }>, startedAt: Date): Promise<RepairOutcome> {
  const event = parseEvent(repair.payload);
  const msgID = `${repair.eventId}:reconcile:${startedAt.getTime()}`;
  const ack = await nats.js.publish(repair.subject, JSON.stringify(repair.payload), {
    msgID,
    headers: eventHeaders(event),
    timeout: PUBLISH_TIMEOUT_MS,
  });
  if (ack.duplicate) return { status: "skipped", detail: `JetStream dropped ${msgID} as a duplicate; run again` };
  return { status: "repaired", detail: `republished to ${repair.subject} as ${msgID} (${ack.stream} seq ${ack.seq})` };
}
