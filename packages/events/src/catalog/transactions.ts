import { z } from "zod";
import { defineEvent, id } from "./define.ts";
import { currencyCode, positiveMinorUnits } from "./accounts.ts";

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
  /** Fraud passed: accounts credits the destination with what was debited. */
  "transaction.credit.requested": defineEvent(1, z.object({ transferId: id, toAccountId: id, amountMinor: positiveMinorUnits })),
  /** Fraud failed or the credit was refused: accounts gives the debited amount back, once. */
  "transaction.refund.requested": defineEvent(
    1,
    z.object({ transferId: id, fromAccountId: id, amountMinor: positiveMinorUnits, reason: z.string().min(1).max(200) }),
  ),
} as const;
