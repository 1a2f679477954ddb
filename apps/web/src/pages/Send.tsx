/**
 * Send money by account number. One idempotency key per intent: made when the form is first sent,
 * kept for every retry of the same details (a double click, a retry after a network error), and
 * replaced only when the details change or the transfer was accepted — so one intent, one transfer.
 */
import { useRef, useState, type FormEvent } from "react";
import { request } from "../api.ts";
import { ApiError } from "../errors.ts";
import { formatPaise, rupeesToPaise } from "../money.ts";
import { InitiateTransfer, MyAccounts } from "../operations.ts";
import { ErrorNotice, Loading, PageHeading, useAction, useQuery } from "../ui.tsx";

/** The correlation id a transfer was sent with: its reference for support and the audit trail. */
export function rememberReference(transferId: string, correlationId: string): void {
  sessionStorage.setItem(`vaultpay.reference.${transferId}`, correlationId);
}
export function referenceOf(transferId: string): string | null {
  return sessionStorage.getItem(`vaultpay.reference.${transferId}`);
}

export function Send({ navigate }: { navigate: (path: string) => void }) {
  const accounts = useQuery(MyAccounts, {});
  const [fromAccountId, setFrom] = useState("");
  const [toAccountNumber, setTo] = useState("");
  const [amount, setAmount] = useState("");
  const [note, setNote] = useState("");
  const { busy, error, setError, run } = useAction();
  const intentKey = useRef<string | undefined>(undefined);
  const reference = useRef<string | undefined>(undefined);
  const change = (set: (value: string) => void) => (value: string) => {
    intentKey.current = undefined; // other details: another intent
    reference.current = undefined;
    set(value);
  };
  const parsed = rupeesToPaise(amount);
  const from = fromAccountId || accounts.data?.myAccounts[0]?.id || "";

  function submit(event?: FormEvent) {
    event?.preventDefault();
    if (!parsed.ok) return setError(new ApiError("BAD_USER_INPUT", parsed.reason));
    // A double click's second click is dropped by run(); a retry reuses the intent's key.
    void run(async () => {
      const idempotencyKey = (intentKey.current ??= `web-${crypto.randomUUID()}`);
      const correlationId = (reference.current ??= crypto.randomUUID());
      const digits = toAccountNumber.replace(/[\s-]/g, "");
      const { initiateTransfer } = await request(
        InitiateTransfer,
        {
          fromAccountId: from,
          toAccountNumber: digits,
          amountMinor: parsed.paise,
          idempotencyKey,
          note: note.trim() || null,
        },
        { correlationId },
      );
      rememberReference(initiateTransfer.id, correlationId);
      intentKey.current = undefined;
      reference.current = undefined;
      navigate(`/transfers/${initiateTransfer.id}`);
    });
  }

  if (!accounts.data)
    return (
      <main>
        <PageHeading>Send money</PageHeading>
        {accounts.loading ? <Loading what="your accounts" /> : <ErrorNotice error={accounts.error} onRetry={accounts.reload} />}
      </main>
    );
  if (accounts.data.myAccounts.length === 0)
    return (
      <main>
        <PageHeading>Send money</PageHeading>
        <p>Open an account first, on the Accounts page.</p>
      </main>
    );
  return (
    <main className="narrow">
      <PageHeading>Send money</PageHeading>
      <form onSubmit={submit} aria-label="Send money" noValidate>
        <label htmlFor="from">From</label>
        <select id="from" value={from} onChange={(event) => change(setFrom)(event.target.value)}>
          {accounts.data.myAccounts.map((account) => (
            <option key={account.id} value={account.id}>
              {account.type === "SAVINGS" ? "Savings" : "Current"} {account.maskedNumber} — {formatPaise(account.balance.minor)}
            </option>
          ))}
        </select>
        <label htmlFor="to">To account number</label>
        <input
          id="to"
          inputMode="numeric"
          autoComplete="off"
          required
          pattern="[0-9 -]{12,15}"
          value={toAccountNumber}
          onChange={(event) => change(setTo)(event.target.value)}
          aria-describedby="to-hint"
        />
        <p id="to-hint" className="hint">
          The 12-digit number of the account you are paying.
        </p>
        <label htmlFor="amount">Amount in rupees (₹)</label>
        <input
          id="amount"
          inputMode="decimal"
          autoComplete="off"
          required
          value={amount}
          onChange={(event) => change(setAmount)(event.target.value)}
          aria-describedby="amount-hint"
          aria-invalid={amount !== "" && !parsed.ok}
        />
        <p id="amount-hint" className="hint">
          {amount === "" ? "For example 250 or 1,250.50." : parsed.ok ? `You are sending ${formatPaise(parsed.paise)}.` : parsed.reason}
        </p>
        <label htmlFor="note">Note (optional)</label>
        <input id="note" maxLength={140} value={note} onChange={(event) => change(setNote)(event.target.value)} />
        <ErrorNotice error={error} onRetry={() => submit()} />
        <button type="submit" disabled={busy}>
          {busy ? "Sending…" : "Send money"}
        </button>
      </form>
    </main>
  );
}
