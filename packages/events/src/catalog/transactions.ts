import { z } from "zod";
import { TEXT_LIMITS, boundedText, defineEvent, id } from "./define.ts";
import { currencyCode, positiveMinorUnits } from "./accounts.ts";
import { TRANSFER_STATUSES } from "./transfer-status.ts";

export const transferStatus = z.enum(TRANSFER_STATUSES);

/**
 * Events of the transactions service (stream TRANSACTIONS). The three commands below drive the
 * accounts side of the transfer saga (shared/ARCHITECTURE.md §4); accounts answers each with an
 * account.* event. `transaction.status.changed`, `.completed` and `.failed` belong to the
 * transactions service and are added with it.
 */
export const transactionEvents = {
  /** A transfer was accepted: accounts debits the source (once per transfer). */
  "transaction.initiated": defineEvent(
    1,
    z.object({
      transferId: id,
      fromAccountId: id,
      toAccountId: id,
      amountMinor: positiveMinorUnits,
      currency: currencyCode,
      /** The customer who initiated it; accounts refuses to debit an account this user does not own. */
      userId: id,
    }),
  ),
  /**
   * Accounts credits the destination with what was debited. Sent by transfers that passed fraud
   * before accounts credited on the verdict itself (in flight across that upgrade); accounts still
   * answers it, once per transfer like the verdict's credit.
   */
  "transaction.credit.requested": defineEvent(1, z.object({ transferId: id, toAccountId: id, amountMinor: positiveMinorUnits })),
  /** Fraud failed or the credit was refused: accounts gives the debited amount back, once. */
  "transaction.refund.requested": defineEvent(
    1,
    z.object({ transferId: id, fromAccountId: id, amountMinor: positiveMinorUnits, reason: boundedText(TEXT_LIMITS.reasonChars) }),
  ),
  /** Every status change of a transfer; the gateway pushes these to transferStatusChanged subscribers. */
  "transaction.status.changed": defineEvent(
    1,
    z.object({
      transferId: id,
      userId: id,
      status: transferStatus,
      previousStatus: transferStatus.nullable(),
      failureReason: z.string().max(TEXT_LIMITS.reasonChars).nullable(),
      changedAt: z.iso.datetime({ offset: true }),
    }),
  ),
  /**
   * `userId` and `currency` (and on failures the amount) say whom to tell and what: auth's transfer
   * notices read them. Optional, so events published before they were added still validate.
   */
  "transaction.completed": defineEvent(
    1,
    z.object({
      transferId: id,
      fromAccountId: id,
      toAccountId: id,
      amountMinor: positiveMinorUnits,
      userId: id.optional(),
      currency: currencyCode.optional(),
    }),
  ),
  "transaction.failed": defineEvent(
    1,
    z.object({
      transferId: id,
      status: z.enum(["FAILED", "REJECTED"]),
      reason: boundedText(TEXT_LIMITS.reasonChars),
      userId: id.optional(),
      amountMinor: positiveMinorUnits.optional(),
      currency: currencyCode.optional(),
    }),
  ),
} as const;
