/** How a reconciliation report reads: one line per finding for people, JSON for machines. */
import type { ReconcileReport, ReconciledFinding } from "./reconcile.ts";

/** `DEBIT_WITHOUT_TRANSFER transfer=… accountId=… amountMinor=100 — <message> [repaired: …]` */
export function formatFinding(finding: ReconciledFinding): string {
  const subject =
    finding.transferId !== undefined ? `transfer=${finding.transferId}` : `service=${finding.service} event=${finding.eventId}`;
  const details = Object.entries(finding.details).map(([key, value]) => `${key}=${/\s/.test(value) ? JSON.stringify(value) : value}`);
  const outcome = finding.repairOutcome
    ? ` [${finding.repairOutcome.status}: ${finding.repairOutcome.detail}]`
    : finding.repair
      ? " [repairable with --repair]"
      : " [needs a person]";
  return `${finding.code} ${subject} ${details.join(" ")} — ${finding.message}${outcome}`;
}

/** The outbox rows --prune deleted, over all services. */
export function prunedRows(report: Pick<ReconcileReport, "pruned">): number {
  return total(report.pruned);
}

/** The processed_event rows --prune deleted, over all services. */
export function prunedProcessedRows(report: Pick<ReconcileReport, "prunedProcessed">): number {
  return total(report.prunedProcessed);
}

function total(counts: Partial<Record<string, number>>): number {
  return Object.values(counts).reduce((sum: number, count) => sum + (count ?? 0), 0);
}

/** What --prune did with the consumers' processed_event rows, for the summary line. */
function processedPruning(report: Pick<ReconcileReport, "prunedProcessed" | "processedBefore">): string {
  if (!report.processedBefore) return " (processed events all kept)";
  return ` and ${prunedProcessedRows(report)} processed-event row(s) from before ${report.processedBefore.toISOString()}`;
}

export function formatSummary(report: ReconcileReport): string {
  const repaired = report.findings.length - report.unresolved;
  const cut = report.truncated ? ` (stopped at ${report.findings.length}: run again after acting on these)` : "";
  const pruning = report.prune ? `; pruned ${prunedRows(report)} outbox row(s) the audit log holds${processedPruning(report)}` : "";
  const read = report.full
    ? `; money: the whole history, ${report.transfersJudged} transfer(s)`
    : `; money: ${report.transfersJudged} transfer(s) changed since ${report.since?.toISOString()} or left open (--full reads all)`;
  return `reconcile: ${report.findings.length} finding(s)${cut}, ${repaired} repaired, ${report.unresolved} left; grace ${report.graceMs / 1000} s${read}${pruning}${report.repair ? "" : "; report only (--repair to fix what can be fixed)"}`;
}

/** The report as JSON (bigints as decimal strings, like money everywhere else in VaultPay). */
export function reportJson(report: ReconcileReport): string {
  return JSON.stringify(report, (_key, value: unknown) => (typeof value === "bigint" ? value.toString() : value), 2);
}
