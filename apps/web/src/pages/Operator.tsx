/**
 * The operator console (ADMIN). The menu shows it to administrators only, but the API is what
 * refuses a customer: every query here answers FORBIDDEN to anyone else.
 */
import { useRef, useState, type FormEvent } from "react";
import { request } from "../api.ts";
import { ApiError } from "../errors.ts";
import { formatPaise, rupeesToPaise } from "../money.ts";
import { AuditLog, DepositFunds, FraudChecks, Users, VerifyAuditChain, type AuditRecord } from "../operations.ts";
import { ErrorNotice, Loading, PageHeading, formatDateTime, useAction, useQuery } from "../ui.tsx";

export function Operator() {
  return (
    <main>
      <PageHeading>Operator console</PageHeading>
      <Deposit />
      <FraudList />
      <AuditTrail />
      <ChainCheck />
    </main>
  );
}

function Deposit() {
  const users = useQuery(Users, { first: 50, after: null });
  const [accountId, setAccountId] = useState("");
  const [amount, setAmount] = useState("");
  const { busy, error, setError, run } = useAction();
  const [result, setResult] = useState<string>();
  const intentKey = useRef<string | undefined>(undefined);
  const accounts = users.data?.users.flatMap((user) => user.accounts.map((account) => ({ ...account, email: user.email }))) ?? [];
  function submit(event: FormEvent) {
    event.preventDefault();
    const parsed = rupeesToPaise(amount);
    if (!parsed.ok) return setError(new ApiError("BAD_USER_INPUT", parsed.reason));
    void run(async () => {
      // One deposit per intent, like transfers: a retry or a double click deposits once.
      const idempotencyKey = (intentKey.current ??= `web-deposit-${crypto.randomUUID()}`);
      const { depositFunds } = await request(DepositFunds, { accountId, amountMinor: parsed.paise, idempotencyKey });
      intentKey.current = undefined;
      setResult(`Deposited ${formatPaise(parsed.paise)}; the balance of ${depositFunds.maskedNumber} is now ${formatPaise(depositFunds.balance.minor)}.`);
      users.reload();
    });
  }
  const reset = (set: (value: string) => void) => (value: string) => {
    intentKey.current = undefined;
    setResult(undefined);
    set(value);
  };
  return (
    <section aria-labelledby="deposit-heading">
      <h2 id="deposit-heading">Deposit funds</h2>
      <ErrorNotice error={users.error} onRetry={users.reload} />
      <form onSubmit={submit} aria-label="Deposit funds">
        <label htmlFor="deposit-account">Account</label>
        <select id="deposit-account" required value={accountId} onChange={(event) => reset(setAccountId)(event.target.value)}>
          <option value="">Choose an account</option>
          {accounts.map((account) => (
            <option key={account.id} value={account.id}>
              {account.email} · {account.type} {account.maskedNumber} · {formatPaise(account.balance.minor)}
            </option>
          ))}
        </select>
        <label htmlFor="deposit-amount">Amount in rupees (₹)</label>
        <input id="deposit-amount" inputMode="decimal" required value={amount} onChange={(event) => reset(setAmount)(event.target.value)} />
        <ErrorNotice error={error} />
        <button type="submit" disabled={busy || !accountId}>
          {busy ? "Depositing…" : "Deposit"}
        </button>
        {result && <p role="status">{result}</p>}
      </form>
    </section>
  );
}

function FraudList() {
  const checks = useQuery(FraudChecks, { onlyFailed: false, first: 50 });
  // Failed first, then newest first: what needs a look comes before what passed.
  const sorted = [...(checks.data?.fraudChecks ?? [])].sort((a, b) => Number(a.passed) - Number(b.passed) || b.checkedAt.localeCompare(a.checkedAt));
  return (
    <section aria-labelledby="fraud-heading">
      <h2 id="fraud-heading">Fraud checks</h2>
      <ErrorNotice error={checks.error} onRetry={checks.reload} />
      {checks.loading && !checks.data && <Loading what="fraud checks" />}
      {checks.data && sorted.length === 0 && <p>No checks yet.</p>}
      {sorted.length > 0 && (
        <table>
          <caption className="visually-hidden">Fraud checks, failed first</caption>
          <thead>
            <tr>
              <th scope="col">Checked</th>
              <th scope="col">Result</th>
              <th scope="col">Score</th>
              <th scope="col">Rules that fired</th>
            </tr>
          </thead>
          <tbody>
            {sorted.map((check, index) => (
              <tr key={`${check.checkedAt}-${index}`}>
                <td>{formatDateTime(check.checkedAt)}</td>
                <td>{check.passed ? "passed" : <strong>FAILED</strong>}</td>
                <td>{check.riskScore}</td>
                <td>{check.reasons.join("; ") || "none"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <button type="button" onClick={checks.reload}>
        Refresh fraud checks
      </button>
    </section>
  );
}

function AuditTrail() {
  const [correlationId, setCorrelationId] = useState("");
  const [records, setRecords] = useState<AuditRecord[]>();
  const [error, setError] = useState<unknown>();
  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    try {
      setRecords((await request(AuditLog, { correlationId: correlationId.trim() || null, first: 100, afterSeq: null })).auditLog);
    } catch (caught) {
      setError(caught);
    }
  }
  return (
    <section aria-labelledby="audit-heading">
      <h2 id="audit-heading">Audit trail</h2>
      <form onSubmit={submit} aria-label="Audit trail">
        <label htmlFor="correlation">Correlation id (empty: the first records)</label>
        <input id="correlation" value={correlationId} onChange={(event) => setCorrelationId(event.target.value)} />
        <button type="submit">Show the trail</button>
      </form>
      <ErrorNotice error={error} />
      {records && records.length === 0 && <p role="status">No audit records for that correlation id.</p>}
      {records && records.length > 0 && (
        <ol className="audit" aria-label="Audit records">
          {records.map((record) => (
            <li key={record.id}>
              <strong>#{record.seq} {record.type}</strong> · {formatDateTime(record.occurredAt)}
              {record.correlationId && <> · correlation {record.correlationId}</>}
              <details>
                <summary>Data and hash</summary>
                <pre>{record.data}</pre>
                <p className="hint">hash {record.hash}</p>
              </details>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}

function ChainCheck() {
  const [result, setResult] = useState<string>();
  const { busy, error, run } = useAction();
  const verify = () =>
    run(async () => {
      const { valid, checked, firstBrokenSeq } = (await request(VerifyAuditChain, {})).verifyAuditChain;
      setResult(valid ? `The audit chain is intact: ${checked} records checked.` : `The audit chain is BROKEN at record #${firstBrokenSeq} (${checked} checked).`);
    });
  return (
    <section aria-labelledby="chain-heading">
      <h2 id="chain-heading">Audit chain</h2>
      <button type="button" onClick={verify} disabled={busy}>
        Verify the audit chain
      </button>
      {result && <p role="status">{result}</p>}
      <ErrorNotice error={error} />
    </section>
  );
}
