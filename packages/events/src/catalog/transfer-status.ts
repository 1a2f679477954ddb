/**
 * The statuses of a transfer as one table: their order, which end the transfer, and which may
 * follow which. Part of the event contract (transaction.status.changed carries them), so the saga,
 * the database CHECK's test and the gateway's subscriptions read this one table.
 *   PENDING --debited--> DEBITED --credited--> COMPLETED
 *   PENDING --debit rejected--> REJECTED
 *   PENDING --debit timed out, refund settled--> FAILED
 *   DEBITED --fraud failed / credit refused / step timed out, refunded--> FAILED
 */
export const TRANSFER_STATUSES = ["PENDING", "DEBITED", "COMPLETED", "FAILED", "REJECTED"] as const;
export type TransferStatus = (typeof TRANSFER_STATUSES)[number];

export const TRANSFER_LIFECYCLE: Readonly<Record<TransferStatus, { rank: number; terminal: boolean; next: readonly TransferStatus[] }>> = {
  PENDING: { rank: 0, terminal: false, next: ["DEBITED", "REJECTED", "FAILED"] },
  DEBITED: { rank: 1, terminal: false, next: ["COMPLETED", "FAILED"] },
  COMPLETED: { rank: 2, terminal: true, next: [] },
  FAILED: { rank: 2, terminal: true, next: [] },
  REJECTED: { rank: 2, terminal: true, next: [] },
};

export function isTerminalStatus(status: TransferStatus): boolean {
  return TRANSFER_LIFECYCLE[status].terminal;
}

/** Order for subscribers: a status is never shown after one of a higher rank. */
export function statusRank(status: TransferStatus): number {
  return TRANSFER_LIFECYCLE[status].rank;
}

/** Statuses only move forward, as the table says; anything else is a bug, caught where it happens. */
export function assertTransition(from: TransferStatus, to: TransferStatus): void {
  if (!TRANSFER_LIFECYCLE[from].next.includes(to)) throw new Error(`illegal transfer status change ${from} -> ${to}`);
}
