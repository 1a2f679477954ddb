import { z } from "zod";
import { defineEvent, id, minorUnits } from "./define.ts";

/** A strictly positive amount: every movement of money between accounts is. */
export const positiveMinorUnits = minorUnits.refine((value) => !value.startsWith("-") && value !== "0", "amount must be positive");
/** ISO 4217 alphabetic code. */
export const currencyCode = z.string().regex(/^[A-Z]{3}$/, "ISO 4217 currency code");

/** Why accounts refused to debit the source of a transfer. */
/** TRANSFER_CANCELLED: the saga already asked to refund this transfer before its debit arrived. */
export const debitRejectionReason = z.enum([
  "INSUFFICIENT_FUNDS",
  "ACCOUNT_NOT_ACTIVE",
  "ACCOUNT_NOT_FOUND",
  "CURRENCY_MISMATCH",
  "TRANSFER_CANCELLED",
]);
/**
 * Why accounts refused to credit the destination. DEBIT_NOT_FOUND / AMOUNT_MISMATCH /
 * ALREADY_REFUNDED: a credit only ever moves money that this transfer debited and did not refund.
 */
export const creditRejectionReason = z.enum([
  "ACCOUNT_NOT_ACTIVE",
  "ACCOUNT_NOT_FOUND",
  "CURRENCY_MISMATCH",
  "DEBIT_NOT_FOUND",
  "AMOUNT_MISMATCH",
  "ALREADY_REFUNDED",
]);
/** Why accounts refused a refund: only a debit that happened, and was not credited, is given back. */
export const refundRejectionReason = z.enum(["DEBIT_NOT_FOUND", "AMOUNT_MISMATCH", "ALREADY_CREDITED"]);

const transferStep = z.object({ transferId: id, accountId: id, amountMinor: positiveMinorUnits });

/**
 * Events of the accounts service (stream ACCOUNTS). Never a plaintext account number: the blind
 * index (a keyed hash) lets the transactions service find an account by number without it.
 */
export const accountEvents = {
  "account.created": defineEvent(
    1,
    z.object({
      accountId: id,
      userId: id,
      type: z.enum(["SAVINGS", "CURRENT"]),
      currency: currencyCode,
      maskedNumber: z.string().max(32),
      /** blindIndex(number, "account.number") with the shared BLIND_INDEX_KEY. */
      numberBlindIndex: z.string().min(1).max(128),
    }),
  ),
  /** Audit: the full number was decrypted for a reader (the owner or an ADMIN). */
  "account.number.revealed": defineEvent(1, z.object({ accountId: id, readerUserId: id })),
  "account.deposited": defineEvent(1, z.object({ accountId: id, depositId: id, amountMinor: positiveMinorUnits })),
  "account.debited": defineEvent(1, transferStep),
  "account.debit.rejected": defineEvent(1, z.object({ transferId: id, accountId: id, reason: debitRejectionReason })),
  "account.credited": defineEvent(1, transferStep),
  "account.credit.rejected": defineEvent(1, z.object({ transferId: id, accountId: id, reason: creditRejectionReason })),
  "account.refunded": defineEvent(1, transferStep),
  "account.refund.rejected": defineEvent(1, z.object({ transferId: id, accountId: id, reason: refundRejectionReason })),
} as const;
