/**
 * The reconciliation's rules, pure: given what accounts, transactions and audit hold, what is wrong
 * and what may be repaired without a person. Nothing is judged while it may still be in flight:
 * a transfer only when nothing about it changed within the grace period, an event only when it was
 * created and published before it.
 */
import type {
  Finding,
  Movement,
  MovementKind,
  OutboxRow,
  ReconcileClock,
  TransferEvidence,
  TransferRecord,
  TransferStatus,
} from "./model.ts";
import { MOVEMENT_KINDS } from "./model.ts";

/**
 * The reason of the refunds the reconciliation requests; also how it recognises them in
 * transactions' outbox later (a transfer it refunded is then settled, not reported again).
 */
export const RECONCILIATION_REFUND_REASON = "Reconciliation: no saga for this debit";

/**
 * What accounts holds for a transfer that ended in each status (shared/ARCHITECTURE.md §4).
 * PENDING and DEBITED have no row: a transfer settled in them is stuck, whatever it holds.
 */
const SETTLED_MOVEMENTS: Record<TransferStatus, Record<MovementKind, boolean> | null> = {
  PENDING: null,
  DEBITED: null,
  COMPLETED: { DEBIT: true, CREDIT: true, REFUND: false },
  FAILED: { DEBIT: true, CREDIT: false, REFUND: true },
  REJECTED: { DEBIT: false, CREDIT: false, REFUND: false },
};

/** Which account each movement must be on: the source is debited and refunded, the destination credited. */
const MOVEMENT_ACCOUNT: Record<MovementKind, "fromAccountId" | "toAccountId"> = {
  DEBIT: "fromAccountId",
  CREDIT: "toAccountId",
  REFUND: "fromAccountId",
};

function cutoffMs(clock: ReconcileClock): number {
  return clock.now.getTime() - clock.graceMs;
}

/** True when every trace of the transfer is older than the grace period: it can be judged. */
export function isSettled(evidence: TransferEvidence, clock: ReconcileClock): boolean {
  const cutoff = cutoffMs(clock);
  const times = [
    ...(evidence.transfer ? [evidence.transfer.updatedAt] : []),
    ...evidence.movements.map((movement) => movement.at),
    ...evidence.decisions.map((decision) => decision.at),
    ...evidence.reconciliationRefunds.map((refund) => refund.at),
  ];
  return times.every((time) => time.getTime() <= cutoff);
}

/**
 * Whether a transfer judgeTransfer found too young to judge must be carried to the next run by id.
 * A run that reads only what changed since the last one reads every unfinished transfer again by
 * itself, and every transfer with a status change or a movement since; not one held back only by a
 * decision without money or a refund request, which it would then never judge.
 */
export function judgeLater(evidence: TransferEvidence, clock: ReconcileClock): boolean {
  if (isSettled(evidence, clock)) return false;
  const cutoff = cutoffMs(clock);
  const { transfer } = evidence;
  if (transfer && SETTLED_MOVEMENTS[transfer.status] === null) return false;
  // An ended transfer's row changes only with its status: a change since the cutoff is read again.
  if (transfer && transfer.updatedAt.getTime() > cutoff) return false;
  return !evidence.movements.some((movement) => movement.at.getTime() > cutoff);
}

/** "DEBIT 100 on <account>; CREDIT 100 on <account>", in saga order. */
export function describeMovements(movements: readonly Movement[]): string {
  if (movements.length === 0) return "none";
  return [...movements]
    .sort((a, b) => MOVEMENT_KINDS.indexOf(a.kind) - MOVEMENT_KINDS.indexOf(b.kind))
    .map((movement) => `${movement.kind} ${movement.amountMinor} on ${movement.accountId}`)
    .join("; ");
}

/** Every finding about one transfer id; none while any of its rows is younger than the grace period. */
export function judgeTransfer(evidence: TransferEvidence, clock: ReconcileClock): Finding[] {
  if (!isSettled(evidence, clock)) return [];
  return evidence.transfer ? judgeKnownTransfer(evidence, evidence.transfer) : judgeUnknownTransfer(evidence);
}

function judgeKnownTransfer(evidence: TransferEvidence, transfer: TransferRecord): Finding[] {
  const { movements } = evidence;
  const details = {
    status: transfer.status,
    amountMinor: transfer.amountMinor.toString(),
    fromAccountId: transfer.fromAccountId,
    toAccountId: transfer.toAccountId,
    movements: describeMovements(movements),
  };
  const finding = (code: Finding["code"], message: string): Finding => ({ code, message, transferId: transfer.id, details });
  const findings: Finding[] = [];
  const expected = SETTLED_MOVEMENTS[transfer.status];
  if (!expected) {
    findings.push(finding("TRANSFER_STUCK", `transfer still ${transfer.status}, nothing changed within the grace period`));
  } else {
    for (const kind of MOVEMENT_KINDS) {
      const present = movements.some((movement) => movement.kind === kind);
      if (expected[kind] && !present)
        findings.push(finding("MOVEMENT_MISSING", `${transfer.status} transfer without a ${kind} in accounts`));
      if (!expected[kind] && present) findings.push(finding("MOVEMENT_CONTRADICTS_STATUS", `${kind} of a ${transfer.status} transfer`));
    }
  }
  for (const movement of movements) {
    if (movement.amountMinor !== transfer.amountMinor) {
      findings.push(finding("AMOUNT_MISMATCH", `${movement.kind} of ${movement.amountMinor} for a transfer of ${transfer.amountMinor}`));
    }
    const expectedAccount = transfer[MOVEMENT_ACCOUNT[movement.kind]];
    if (movement.accountId !== expectedAccount) {
      findings.push(finding("ACCOUNT_MISMATCH", `${movement.kind} on ${movement.accountId}, the transfer's account is ${expectedAccount}`));
    }
  }
  return findings;
}

function judgeUnknownTransfer(evidence: TransferEvidence): Finding[] {
  const { transferId, movements, decisions, reconciliationRefunds } = evidence;
  const details: Record<string, string> = {
    accountIds: [...new Set(movements.map((movement) => movement.accountId))].join(",") || "none",
    movements: describeMovements(movements),
  };
  if (movements.length === 0) {
    details.decisions = decisions
      .map((decision) => `${decision.step} ${decision.rejection ?? "applied"} on ${decision.accountId}`)
      .join("; ");
    return [
      {
        code: "DECISION_WITHOUT_TRANSFER",
        message: "accounts decided a step of a transfer transactions does not know (no money moved)",
        transferId,
        details,
      },
    ];
  }
  const debits = movements.filter((movement) => movement.kind === "DEBIT");
  const refunds = movements.filter((movement) => movement.kind === "REFUND");
  const credits = movements.filter((movement) => movement.kind === "CREDIT");
  const debit = debits[0];
  if (debit && debits.length === 1 && refunds.length === 0 && credits.length === 0) {
    return [judgeOrphanDebit(evidence, debit, details)];
  }
  const refund = refunds[0];
  const compensated =
    debit &&
    refund &&
    debits.length === 1 &&
    refunds.length === 1 &&
    credits.length === 0 &&
    refund.accountId === debit.accountId &&
    refund.amountMinor === debit.amountMinor;
  // The reconciliation's own repair, applied: the money is back and nothing more can be done.
  if (compensated && reconciliationRefunds.length > 0) return [];
  const why = compensated
    ? "the debit was refunded, but the transfer's record is lost"
    : credits.length > 0 && debit
      ? "money moved between accounts without a transfer record"
      : "money moved that no saga of transactions accounts for";
  return [
    {
      code: "MOVEMENTS_WITHOUT_TRANSFER",
      message: `accounts holds movements of a transfer transactions does not know: ${why}`,
      transferId,
      details,
    },
  ];
}

function judgeOrphanDebit(evidence: TransferEvidence, debit: Movement, details: Record<string, string>): Finding {
  const { transferId } = evidence;
  const base = {
    code: "DEBIT_WITHOUT_TRANSFER" as const,
    transferId,
    details: { ...details, accountId: debit.accountId, amountMinor: debit.amountMinor.toString() },
  };
  const refusal = evidence.decisions.find((decision) => decision.step === "REFUND" && decision.rejection !== null);
  if (refusal) {
    // Accounts answers every later refund request of this transfer the same way: only a person can help.
    return { ...base, message: `accounts debited a transfer transactions does not know and refused its refund (${refusal.rejection})` };
  }
  const requested = evidence.reconciliationRefunds[0];
  if (requested) {
    return {
      ...base,
      message: `a refund requested by reconciliation (event ${requested.eventId}) was not applied; check the transactions relay and the accounts-saga consumer`,
    };
  }
  return {
    ...base,
    message: "accounts debited a transfer transactions does not know; no saga will credit or refund it",
    repair: { kind: "refund", transferId, accountId: debit.accountId, amountMinor: debit.amountMinor, debitEvent: evidence.debitEvent },
  };
}

/**
 * Findings about one service's outbox rows: never published, or published and missing from the
 * audit log (`auditedIds`: the ids of these rows that audit holds).
 */
export function judgeOutbox(rows: readonly OutboxRow[], auditedIds: ReadonlySet<string>, clock: ReconcileClock): Finding[] {
  const cutoff = cutoffMs(clock);
  const findings: Finding[] = [];
  for (const row of rows) {
    if (lastOutboxChangeMs(row) > cutoff) continue;
    const base = { service: row.service, eventId: row.id, details: { type: row.type, createdAt: row.createdAt.toISOString() } };
    if (row.publishedAt === null) {
      findings.push({ ...base, code: "EVENT_NOT_PUBLISHED", message: `${row.service}'s relay never published this outbox row` });
    } else if (!auditedIds.has(row.id.toLowerCase())) {
      findings.push({
        ...base,
        code: "EVENT_MISSING_FROM_AUDIT",
        message: `published by ${row.service}, missing from the audit log`,
        repair: { kind: "republish", service: row.service, eventId: row.id, subject: row.subject, payload: row.payload },
      });
    }
  }
  return findings;
}

/** When an outbox row last changed: its creation, or its publication once published. */
function lastOutboxChangeMs(row: OutboxRow): number {
  return Math.max(row.createdAt.getTime(), row.publishedAt?.getTime() ?? 0);
}

/** A refund request the reconciliation wrote into transactions' outbox (see RECONCILIATION_REFUND_REASON). */
export function isReconciliationRefund(row: Pick<OutboxRow, "type" | "payload">): boolean {
  if (row.type !== "transaction.refund.requested") return false;
  const data = (row.payload as { data?: { reason?: unknown } } | null)?.data;
  return data?.reason === RECONCILIATION_REFUND_REASON;
}

/**
 * The ids of the rows `--prune` deletes from one service's outbox: published and held by the audit
 * log, both before the grace period (judgeOutbox finds nothing about them), so the row is a copy of
 * an audit record and nothing will publish it again. Kept whatever their age: the reconciliation's
 * own refund requests (how a later run knows it asked) and the events in `kept` (the debits of
 * transfers transactions does not know and not yet settled, whose refund joins the debit's
 * correlation id).
 */
export function prunableOutboxIds(
  rows: readonly OutboxRow[],
  auditedIds: ReadonlySet<string>,
  clock: ReconcileClock,
  kept: ReadonlySet<string>,
): string[] {
  const cutoff = cutoffMs(clock);
  return rows
    .filter(
      (row) =>
        row.publishedAt !== null &&
        lastOutboxChangeMs(row) <= cutoff &&
        auditedIds.has(row.id.toLowerCase()) &&
        !kept.has(row.id.toLowerCase()) &&
        !isReconciliationRefund(row),
    )
    .map((row) => row.id);
}

/** How much longer than the streams keep a message `--prune` keeps a consumer's processed_event row. */
export const PROCESSED_EVENT_MARGIN_HOURS = 24;

/**
 * How long `--prune` keeps processed_event rows by default: as long as the event streams keep a
 * message (NATS_STREAM_MAX_AGE_HOURS), and a day. A durable can be handed a message again only
 * while its stream holds it (a lost ack, a durable created again from the stream's start); past
 * that, a copy comes back only when someone publishes it again (a dead letter replayed, the
 * reconciliation republishing), and each consumer's own rules take a repeat once: a saga step is
 * decided once per transfer, a fraud check once per transfer, a notice once per transfer and
 * status, a directory entry or a known device is an upsert, the audit log stores an event id once.
 * Undefined (keep them all) when the streams keep every message (0).
 */
export function processedEventKeepMs(streamMaxAgeHours: number): number | undefined {
  if (!Number.isFinite(streamMaxAgeHours) || streamMaxAgeHours < 0) {
    throw new Error(`a stream's age limit is a number of hours from 0 up, not ${streamMaxAgeHours}`);
  }
  return streamMaxAgeHours === 0 ? undefined : (streamMaxAgeHours + PROCESSED_EVENT_MARGIN_HOURS) * 3_600_000;
}
