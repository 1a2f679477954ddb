/**
 * What VaultPay says to customers, in one place: every message auth sends is built here, so the
 * wording (and what a message may carry) is reviewed once. Plain text only: no HTML to escape, and
 * mail clients show it as written. A message never carries a full account number, a token or a
 * password; an OTP only in its own message.
 */

export interface MessageContent {
  subject: string;
  text: string;
}

/** The one message that carries a code; the code is also kept apart for the dev mailbox. */
export function otpMessage(code: string, ttlSeconds: number): MessageContent {
  const minutes = Math.round(ttlSeconds / 60);
  return {
    subject: "Your VaultPay sign-in code",
    text: `Your VaultPay code is ${code}. It expires in ${minutes} minutes. Never share it: VaultPay will never ask you for it.`,
  };
}

export function accountExistsMessage(): MessageContent {
  return {
    subject: "Someone tried to register with your address",
    text: "Someone tried to create a VaultPay account with this address. You already have one: sign in instead. If it was not you, nothing changed.",
  };
}

export interface TransferNotice {
  transferId: string;
  status: "COMPLETED" | "FAILED";
  amountMinor: bigint;
  currency: string;
  /** Why it failed, as the saga recorded it (a customer-readable sentence). */
  reason?: string | undefined;
}

/** Minor units as a decimal amount: 2500050 INR → "25000.50 INR" (no float on the way). */
export function formatAmount(amountMinor: bigint, currency: string): string {
  const negative = amountMinor < 0n;
  const digits = (negative ? -amountMinor : amountMinor).toString().padStart(3, "0");
  return `${negative ? "-" : ""}${digits.slice(0, -2)}.${digits.slice(-2)} ${currency}`;
}

export function transferNoticeMessage(notice: TransferNotice): MessageContent {
  const amount = formatAmount(notice.amountMinor, notice.currency);
  const reference = `Reference: ${notice.transferId}.`;
  if (notice.status === "COMPLETED") {
    return { subject: `Transfer of ${amount} completed`, text: `Your transfer of ${amount} has completed. ${reference}` };
  }
  const why = notice.reason ? ` Reason: ${notice.reason}.` : "";
  return {
    subject: `Transfer of ${amount} failed`,
    text: `Your transfer of ${amount} did not go through and any money taken has been returned to your account.${why} ${reference}`,
  };
}
