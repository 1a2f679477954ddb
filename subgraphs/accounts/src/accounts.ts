/**
 * Accounts: numbers, currencies and who may see what. Pure: no Prisma, GraphQL or NATS types.
 */
import { randomInt } from "node:crypto";
import { ACCOUNT_NUMBER_DIGITS, luhnCheckDigit } from "@vaultpay/money";

// What every service knows about account numbers (12 digits, Luhn) lives in @vaultpay/money.
export { ACCOUNT_NUMBER_CONTEXT, ACCOUNT_NUMBER_DIGITS, isValidAccountNumber, luhnCheckDigit } from "@vaultpay/money";

export type AccountType = "SAVINGS" | "CURRENT";
export type AccountStatus = "ACTIVE" | "FROZEN" | "CLOSED";
export type Role = "CUSTOMER" | "ADMIN";

export interface Account {
  id: string;
  userId: string;
  type: AccountType;
  currency: string;
  status: AccountStatus;
  statusReason: string | null;
  balanceMinor: bigint;
  numberLast4: string;
  createdAt: Date;
}

/** Who asks: the verified caller of a request. */
export interface Reader {
  userId: string;
  role: Role;
}

/** Only INR for now; the list grows when the ledger learns exchange (never implicitly). */
export const SUPPORTED_CURRENCIES: ReadonlySet<string> = new Set(["INR"]);

export type CurrencyCheck = { ok: true; currency: string } | { ok: false; message: string };

/** An ISO 4217 alphabetic code that the ledger supports. */
export function checkCurrency(input: string): CurrencyCheck {
  if (!/^[A-Z]{3}$/.test(input)) return { ok: false, message: "currency must be an ISO 4217 code such as INR" };
  if (!SUPPORTED_CURRENCIES.has(input)) return { ok: false, message: `currency ${input} is not supported; only INR for now` };
  return { ok: true, currency: input };
}

/**
 * A fresh random account number: 11 random digits (the first not 0, so it never loses a digit
 * as a number) and a Luhn check digit. Uniqueness is the database's job (unique blind index).
 */
export function generateAccountNumber(random: (min: number, max: number) => number = randomInt): string {
  let payload = String(random(1, 10));
  while (payload.length < ACCOUNT_NUMBER_DIGITS - 1) payload += String(random(0, 10));
  return `${payload}${luhnCheckDigit(payload)}`;
}

/** What every screen but the owner's shows; the last four are public (printed on every statement). */
export function maskAccountNumber(last4: string): string {
  return `XXXX${last4}`;
}

/**
 * Whether a reader may see an account at all. Anyone else gets NOT_FOUND, never FORBIDDEN, so
 * account ids cannot be probed.
 */
export function canSee(reader: Reader, account: Pick<Account, "userId">): boolean {
  return reader.role === "ADMIN" || reader.userId === account.userId;
}

/** The full number is decrypted for the owner or an ADMIN only (and each read is audited). */
export function canRevealNumber(reader: Reader, account: Pick<Account, "userId">): boolean {
  return canSee(reader, account);
}

/** Whose accounts a reader may list: their own; an ADMIN anyone's. */
export function canListAccountsOf(reader: Reader, userId: string): boolean {
  return reader.role === "ADMIN" || reader.userId === userId;
}
