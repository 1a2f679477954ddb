/**
 * The ledger's rules: when money may leave or enter an account. Pure: `debit(account, amount)`
 * decides, storage applies the decision (journal row + balance) in one transaction.
 */
import type { Account } from "./accounts.ts";

/** Refuses fat fingers and overflow long before BIGINT does: ₹10 crore (10^8 rupees) per movement, in paise. */
export const MAX_MOVEMENT_MINOR = 100_000_000n * 100n;

export type DebitRejection = "INSUFFICIENT_FUNDS" | "ACCOUNT_NOT_ACTIVE" | "ACCOUNT_NOT_FOUND" | "CURRENCY_MISMATCH" | "TRANSFER_CANCELLED";
export type CreditRejection =
  | "ACCOUNT_NOT_ACTIVE"
  | "ACCOUNT_NOT_FOUND"
  | "CURRENCY_MISMATCH"
  | "DEBIT_NOT_FOUND"
  | "AMOUNT_MISMATCH"
  | "ALREADY_REFUNDED";
export type RefundRejection = "DEBIT_NOT_FOUND" | "AMOUNT_MISMATCH" | "ALREADY_CREDITED";

export type Decision<R extends string> = { ok: true; balanceAfterMinor: bigint } | { ok: false; reason: R };

type Ledgered = Pick<Account, "userId" | "status" | "currency" | "balanceMinor">;

export type AmountCheck = { ok: true } | { ok: false; message: string };

export function checkAmount(amountMinor: bigint): AmountCheck {
  if (amountMinor <= 0n) return { ok: false, message: "amount must be greater than zero" };
  if (amountMinor > MAX_MOVEMENT_MINOR) return { ok: false, message: `amount must not exceed ${MAX_MOVEMENT_MINOR} minor units` };
  return { ok: true };
}

function assertPositive(amountMinor: bigint): void {
  // Events are validated as positive before they get here; a zero or negative amount is a bug.
  if (amountMinor <= 0n) throw new RangeError(`ledger amount must be positive, got ${amountMinor}`);
}

/** The source of a transfer: only its owner's, only ACTIVE, same currency, never below zero. */
export function debit(
  account: Ledgered | undefined,
  request: { amountMinor: bigint; currency: string; userId: string },
): Decision<DebitRejection> {
  assertPositive(request.amountMinor);
  // Someone else's account is "not found": the initiator learns nothing about it.
  if (!account || account.userId !== request.userId) return { ok: false, reason: "ACCOUNT_NOT_FOUND" };
  if (account.status !== "ACTIVE") return { ok: false, reason: "ACCOUNT_NOT_ACTIVE" };
  if (account.currency !== request.currency) return { ok: false, reason: "CURRENCY_MISMATCH" };
  if (account.balanceMinor < request.amountMinor) return { ok: false, reason: "INSUFFICIENT_FUNDS" };
  return { ok: true, balanceAfterMinor: account.balanceMinor - request.amountMinor };
}

/** What this transfer did so far, from the journal: the basis of credit and refund decisions. */
export interface TransferHistory {
  /** The debit of this transfer, if it happened. */
  debit?: { amountMinor: bigint; currency: string } | undefined;
  credited: boolean;
  refunded: boolean;
}

/** The destination of a transfer: money that this transfer debited and did not give back. */
export function credit(account: Ledgered | undefined, amountMinor: bigint, history: TransferHistory): Decision<CreditRejection> {
  assertPositive(amountMinor);
  if (!history.debit) return { ok: false, reason: "DEBIT_NOT_FOUND" };
  if (history.debit.amountMinor !== amountMinor) return { ok: false, reason: "AMOUNT_MISMATCH" };
  if (history.refunded) return { ok: false, reason: "ALREADY_REFUNDED" };
  if (!account) return { ok: false, reason: "ACCOUNT_NOT_FOUND" };
  if (account.status !== "ACTIVE") return { ok: false, reason: "ACCOUNT_NOT_ACTIVE" };
  if (account.currency !== history.debit.currency) return { ok: false, reason: "CURRENCY_MISMATCH" };
  return { ok: true, balanceAfterMinor: account.balanceMinor + amountMinor };
}

/**
 * Giving a debit back: only one that happened, for its amount, and not if the money was already
 * credited. Any status: a compensation must land even on a frozen account, or the money would
 * stay in flight forever.
 */
export function refund(account: Ledgered, amountMinor: bigint, history: TransferHistory): Decision<RefundRejection> {
  assertPositive(amountMinor);
  if (!history.debit) return { ok: false, reason: "DEBIT_NOT_FOUND" };
  if (history.debit.amountMinor !== amountMinor) return { ok: false, reason: "AMOUNT_MISMATCH" };
  if (history.credited) return { ok: false, reason: "ALREADY_CREDITED" };
  return { ok: true, balanceAfterMinor: account.balanceMinor + amountMinor };
}

export type DepositRejection = "ACCOUNT_NOT_ACTIVE";

/** Money entering the system (an ADMIN's deposit): only into an ACTIVE account. */
export function deposit(account: Ledgered, amountMinor: bigint): Decision<DepositRejection> {
  assertPositive(amountMinor);
  if (account.status !== "ACTIVE") return { ok: false, reason: "ACCOUNT_NOT_ACTIVE" };
  return { ok: true, balanceAfterMinor: account.balanceMinor + amountMinor };
}
