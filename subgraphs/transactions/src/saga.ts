/**
 * The saga's reactions, written against a small store port so the rules read without SQL. Each
 * handler runs inside the transaction that also records the consumed event (exactly-once effect)
 * and writes the events it emits to the outbox.
 */
import { TEXT_LIMITS, boundText, type Event, type EventData, type EventType } from "@vaultpay/events";
import {
  assertTransition,
  isTerminalStatus,
  mayStillBeQueued,
  onStepTimeout,
  stepDeadline,
  type QueuedSince,
  type SagaStep,
  type SagaTimings,
  type TransferStatus,
} from "./transfers.ts";

export interface TransferState {
  id: string;
  userId: string;
  fromAccountId: string;
  toAccountId: string;
  amountMinor: bigint;
  currency: string;
  status: TransferStatus;
  step: SagaStep;
  stepAttempts: number;
  failureReason: string | null;
  requestDeviceId: string | null;
  requestDeviceProven: boolean;
  sessionDeviceId: string;
  correlationId: string;
  createdAt: Date;
}

/** A transfer whose step's deadline has passed (the sweeper's). */
export type OverdueTransfer = TransferState & { stepDeadlineAt: Date };

export interface TransferPatch {
  status?: TransferStatus;
  step: SagaStep;
  stepAttempts: number;
  stepDeadlineAt: Date | null;
  failureReason?: string | null;
}

export interface SagaStore {
  /** The transfer, locked until the surrounding transaction ends; null if unknown. */
  lockTransfer(id: string): Promise<TransferState | null>;
  update(id: string, patch: TransferPatch): Promise<void>;
  recordStatus(id: string, status: TransferStatus, reason: string | null, at: Date): Promise<void>;
  emit<T extends EventType>(type: T, data: EventData<T>): Promise<void>;
}

/** The command that drives a step; sent again (new event id, same transfer) when it times out. */
export async function sendStepCommand(store: SagaStore, transfer: TransferState, step: SagaStep): Promise<void> {
  const amountMinor = transfer.amountMinor.toString();
  switch (step) {
    case "DEBIT":
      return store.emit("transaction.initiated", {
        transferId: transfer.id,
        fromAccountId: transfer.fromAccountId,
        toAccountId: transfer.toAccountId,
        amountMinor,
        currency: transfer.currency,
        userId: transfer.userId,
      });
    case "FRAUD":
      return store.emit("fraud.check.requested", {
        transferId: transfer.id,
        userId: transfer.userId,
        fromAccountId: transfer.fromAccountId,
        toAccountId: transfer.toAccountId,
        amountMinor,
        currency: transfer.currency,
        requestDeviceId: transfer.requestDeviceId,
        deviceProven: transfer.requestDeviceProven,
        sessionDeviceId: transfer.sessionDeviceId,
        initiatedAt: transfer.createdAt.toISOString(),
      });
    case "CREDIT":
      return store.emit("transaction.credit.requested", { transferId: transfer.id, toAccountId: transfer.toAccountId, amountMinor });
    case "REFUND":
      return store.emit("transaction.refund.requested", {
        transferId: transfer.id,
        fromAccountId: transfer.fromAccountId,
        amountMinor,
        reason: boundText(transfer.failureReason ?? "transfer failed", TEXT_LIMITS.reasonChars),
      });
    case "NONE":
      return;
  }
}

/** What the saga tells the service about, and its clock; all optional (tests leave them out). */
export interface SagaOptions {
  now?: () => Date;
  /** Called for outcomes that need a person (logged as errors by the service). */
  onAnomaly?: (transferId: string, what: string) => void;
  /** Told of each status a transfer reaches, with the seconds since it was initiated (metrics). */
  onStatus?: (status: TransferStatus, secondsSinceInitiated: number) => void;
  /** Told what became of each step whose deadline passed (metrics). */
  onDeadline?: (step: SagaStep, outcome: DeadlineOutcome) => void;
}

/** A passed deadline's outcome: the command sent again, held back as still queued, or the step given up (compensated). */
export type DeadlineOutcome = "resent" | "queued" | "given_up";

export class Saga {
  private readonly now: () => Date;
  private readonly onAnomaly: SagaOptions["onAnomaly"];
  private readonly onStatus: SagaOptions["onStatus"];
  private readonly onDeadline: SagaOptions["onDeadline"];

  private readonly timings: SagaTimings;

  constructor(timings: SagaTimings, options: SagaOptions = {}) {
    this.timings = timings;

    this.now = options.now ?? (() => new Date());
    this.onAnomaly = options.onAnomaly;
    this.onStatus = options.onStatus;
    this.onDeadline = options.onDeadline;
  }

  /** Moves to the next step (and status), records it, emits the status change and the step's command. */
  private async advance(
    store: SagaStore,
    transfer: TransferState,
    next: { status?: TransferStatus; step: SagaStep; failureReason?: string | null },
  ): Promise<void> {
    const now = this.now();
    const status = next.status ?? transfer.status;
    if (status !== transfer.status) assertTransition(transfer.status, status);
    // Bounded where it is built, like the events that carry it: many fraud reasons must not make
    // the step throw (it would be retried, dead-lettered, and the money held until the timeout).
    const reason = next.failureReason === undefined ? transfer.failureReason : next.failureReason;
    const failureReason = reason === null ? null : boundText(reason, TEXT_LIMITS.reasonChars);
    await store.update(transfer.id, {
      status,
      step: next.step,
      stepAttempts: 1,
      stepDeadlineAt: next.step === "NONE" ? null : stepDeadline(now, 1, this.timings),
      failureReason,
    });
    const updated: TransferState = { ...transfer, status, step: next.step, stepAttempts: 1, failureReason };
    if (status !== transfer.status) {
      await store.recordStatus(transfer.id, status, failureReason, now);
      this.onStatus?.(status, (now.getTime() - transfer.createdAt.getTime()) / 1000);
      await store.emit("transaction.status.changed", {
        transferId: transfer.id,
        userId: transfer.userId,
        status,
        previousStatus: transfer.status,
        failureReason: isTerminalStatus(status) && status !== "COMPLETED" ? failureReason : null,
        changedAt: now.toISOString(),
      });
      if (status === "COMPLETED") {
        await store.emit("transaction.completed", {
          transferId: transfer.id,
          fromAccountId: transfer.fromAccountId,
          toAccountId: transfer.toAccountId,
          amountMinor: transfer.amountMinor.toString(),
          userId: transfer.userId,
          currency: transfer.currency,
        });
      } else if (status === "FAILED" || status === "REJECTED") {
        await store.emit("transaction.failed", {
          transferId: transfer.id,
          status,
          reason: failureReason ?? "transfer failed",
          userId: transfer.userId,
          amountMinor: transfer.amountMinor.toString(),
          currency: transfer.currency,
        });
      }
    }
    await sendStepCommand(store, updated, next.step);
  }

  /** Reacts to one saga event; late or repeated answers for a step already left are ignored. */
  async handle(store: SagaStore, event: Event): Promise<void> {
    const transferId = (event.data as { transferId?: string }).transferId;
    if (!transferId) return;
    const transfer = await store.lockTransfer(transferId);
    if (!transfer || isTerminalStatus(transfer.status)) return;
    const { status, step } = transfer;
    switch (event.type) {
      case "account.debited":
        if (status === "PENDING" && step === "DEBIT") await this.advance(store, transfer, { status: "DEBITED", step: "FRAUD" });
        return;
      case "account.debit.rejected":
        if (status === "PENDING") {
          await this.advance(store, transfer, { status: "REJECTED", step: "NONE", failureReason: debitRejection(event.data.reason) });
        }
        return;
      case "fraud.check.completed":
        // A passed verdict is credited by accounts itself (to the destination the debit named), one
        // hop less: the saga waits at FRAUD for account.credited. A failed one is unwound here.
        if (status === "DEBITED" && step === "FRAUD" && !event.data.passed) {
          await this.advance(store, transfer, { step: "REFUND", failureReason: fraudFailure(event.data) });
        }
        return;
      case "account.credited":
        // At FRAUD: accounts credited on the passed verdict. At CREDIT: a command sent before
        // accounts credited on verdicts. At REFUND: the credit won the race, accounts will refuse the refund.
        if (status === "DEBITED" && (step === "FRAUD" || step === "CREDIT" || step === "REFUND")) {
          await this.advance(store, transfer, { status: "COMPLETED", step: "NONE", failureReason: null });
        }
        return;
      case "account.credit.rejected":
        if (status === "DEBITED" && (step === "FRAUD" || step === "CREDIT")) {
          await this.advance(store, transfer, {
            step: "REFUND",
            failureReason: `The destination account refused the credit (${event.data.reason})`,
          });
        }
        return;
      case "account.refunded":
        if (step === "REFUND") await this.advance(store, transfer, { status: "FAILED", step: "NONE" });
        return;
      case "account.refund.rejected":
        if (step !== "REFUND") return;
        if (event.data.reason === "ALREADY_CREDITED") {
          if (status === "DEBITED") await this.advance(store, transfer, { status: "COMPLETED", step: "NONE", failureReason: null });
        } else if (event.data.reason === "DEBIT_NOT_FOUND" && status === "PENDING") {
          // The debit never happened before we gave up on it; accounts now refuses it for good.
          await this.advance(store, transfer, { status: "REJECTED", step: "NONE" });
        } else {
          // Accounts recorded this refusal and will answer every resend the same way: retrying
          // would loop forever. End the transfer so it shows, and leave the money to an operator.
          await this.advance(store, transfer, {
            status: status === "PENDING" ? "REJECTED" : "FAILED",
            step: "NONE",
            failureReason: `Refund refused by accounts (${event.data.reason}); needs an operator`,
          });
          this.onAnomaly?.(transfer.id, `refund refused: ${event.data.reason}`);
        }
        return;
      default:
        return;
    }
  }

  /**
   * A step's deadline passed: send its command again, or give up on it and refund. `queuedSince`
   * tells how long the saga's queues have held messages since a time: a command that may still
   * wait among them is not sent again (mayStillBeQueued), except by the step's last attempt. The
   * attempt counts either way, so a step is given up after the same time whether its command was
   * lost or is only slow.
   */
  async timeout(store: SagaStore, transfer: OverdueTransfer, queuedSince: QueuedSince = () => undefined): Promise<void> {
    if (isTerminalStatus(transfer.status) || transfer.step === "NONE") return;
    if (onStepTimeout(transfer.step, transfer.stepAttempts, this.timings) === "retry") {
      const now = this.now();
      const attempts = transfer.stepAttempts + 1;
      await store.update(transfer.id, {
        step: transfer.step,
        stepAttempts: attempts,
        stepDeadlineAt: stepDeadline(now, attempts, this.timings),
      });
      const step = { name: transfer.step, deadline: transfer.stepDeadlineAt, attempts: transfer.stepAttempts };
      // The last attempt (the step is given up at its deadline) sends whatever the queues say: a
      // step is never given up without its command sent once more (one lost in a NATS crash while
      // the queues were long).
      const last = onStepTimeout(transfer.step, attempts, this.timings) === "compensate";
      const queued = !last && mayStillBeQueued(step, queuedSince, this.timings);
      if (!queued) await sendStepCommand(store, transfer, transfer.step);
      this.onDeadline?.(transfer.step, queued ? "queued" : "resent");
      return;
    }
    this.onDeadline?.(transfer.step, "given_up");
    const stepName = { DEBIT: "debit", FRAUD: "fraud check", CREDIT: "credit", REFUND: "refund", NONE: "" }[transfer.step];
    await this.advance(store, transfer, { step: "REFUND", failureReason: `The ${stepName} did not complete in time` });
  }
}

/**
 * What the transfer's owner reads when fraud stopped it: the reasons in plain words, never the
 * engine's thresholds, medians or score (those would teach a thief to stay under them). Verdicts
 * from before `customerReasons` existed carry only the detailed lines.
 */
function fraudFailure(verdict: EventData<"fraud.check.completed">): string {
  const reasons = verdict.customerReasons ?? verdict.reasons;
  return `The fraud check stopped this transfer: ${reasons.length > 0 ? reasons.join("; ") : "no reason given"}`;
}

function debitRejection(reason: string): string {
  switch (reason) {
    case "INSUFFICIENT_FUNDS":
      return "Insufficient funds";
    case "ACCOUNT_NOT_ACTIVE":
      return "The source account is not active";
    case "CURRENCY_MISMATCH":
      return "The currencies of the two accounts differ";
    default:
      return `The debit was refused (${reason})`;
  }
}
