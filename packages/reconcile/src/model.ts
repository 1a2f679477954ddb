/**
 * What the reconciliation compares and what it reports. Plain values, read from the services'
 * databases by store.ts and judged by rules.ts, so the rules run in a unit test without SQL.
 */
import type { ServiceName } from "@vaultpay/migrate";

export type TransferStatus = "PENDING" | "DEBITED" | "COMPLETED" | "FAILED" | "REJECTED";

/** A saga step that moves money in accounts (journal kind and saga_decision step alike). */
export type MovementKind = "DEBIT" | "CREDIT" | "REFUND";

export const MOVEMENT_KINDS: readonly MovementKind[] = ["DEBIT", "CREDIT", "REFUND"];

/** A transfer as the transactions service knows it (table `transfer`). */
export interface TransferRecord {
  id: string;
  status: TransferStatus;
  fromAccountId: string;
  toAccountId: string;
  amountMinor: bigint;
  /** Last change of the saga (status, step or a retry). */
  updatedAt: Date;
}

/** A journal row of accounts with a transfer id; the amount is positive whatever the kind. */
export interface Movement {
  transferId: string;
  kind: MovementKind;
  accountId: string;
  amountMinor: bigint;
  at: Date;
}

/** Accounts' answer to one saga command (table `saga_decision`); rejection null means applied. */
export interface Decision {
  transferId: string;
  step: MovementKind;
  accountId: string;
  amountMinor: bigint;
  rejection: string | null;
  at: Date;
}

/** A `transaction.refund.requested` the reconciliation itself wrote into transactions' outbox. */
export interface ReconciliationRefund {
  transferId: string;
  eventId: string;
  at: Date;
}

/** Accounts' `account.debited` event of a transfer: the refund joins its correlation id. */
export interface DebitEvent {
  eventId: string;
  correlationId: string;
}

/** Everything both services hold about one transfer id. */
export interface TransferEvidence {
  transferId: string;
  /** Undefined: the transactions service has no such transfer. */
  transfer: TransferRecord | undefined;
  movements: readonly Movement[];
  decisions: readonly Decision[];
  /** Only looked up for transfers transactions does not know. */
  reconciliationRefunds: readonly ReconciliationRefund[];
  debitEvent?: DebitEvent | undefined;
}

/**
 * The services whose events go through an outbox (the gateway publishes directly; audit emits only
 * operators' dead-letter replays, which must reach its own chain like any other event).
 */
export const OUTBOX_SERVICES = ["auth", "accounts", "transactions", "fraud", "audit"] as const satisfies readonly ServiceName[];
export type OutboxService = (typeof OUTBOX_SERVICES)[number];

/** One row of a service's `outbox_event`. */
export interface OutboxRow {
  service: OutboxService;
  id: string;
  type: string;
  subject: string;
  /** The whole event envelope, as the relay publishes it. */
  payload: unknown;
  createdAt: Date;
  publishedAt: Date | null;
}

export type FindingCode =
  /** Accounts debited a transfer transactions does not know, and nothing gave it back. Repairable. */
  | "DEBIT_WITHOUT_TRANSFER"
  /** Credits or refunds (with or without a debit) of a transfer transactions does not know. */
  | "MOVEMENTS_WITHOUT_TRANSFER"
  /** Accounts decided a step (a rejection, no money moved) of a transfer transactions does not know. */
  | "DECISION_WITHOUT_TRANSFER"
  /** A movement the transfer's final status says must not exist (a credit of a FAILED transfer…). */
  | "MOVEMENT_CONTRADICTS_STATUS"
  /** A movement the transfer's final status needs and accounts does not have. */
  | "MOVEMENT_MISSING"
  | "AMOUNT_MISMATCH"
  | "ACCOUNT_MISMATCH"
  /** Not terminal, and nothing changed for longer than the grace period. */
  | "TRANSFER_STUCK"
  /** An outbox row older than the grace period that the relay never published. */
  | "EVENT_NOT_PUBLISHED"
  /** A published outbox event the audit log does not hold. Repairable. */
  | "EVENT_MISSING_FROM_AUDIT";

export type Repair =
  | { kind: "refund"; transferId: string; accountId: string; amountMinor: bigint; debitEvent: DebitEvent | undefined }
  | { kind: "republish"; service: OutboxService; eventId: string; subject: string; payload: unknown };

export interface Finding {
  code: FindingCode;
  /** One sentence for the person who acts on it. */
  message: string;
  transferId?: string;
  service?: OutboxService;
  eventId?: string;
  /** What a person needs to act: accounts, amounts, kinds, status… */
  details: Record<string, string>;
  /** What `--repair` does about it; absent: a person must decide. */
  repair?: Repair;
}

export interface ReconcileClock {
  now: Date;
  /** Evidence newer than this is in flight and not judged. */
  graceMs: number;
}
