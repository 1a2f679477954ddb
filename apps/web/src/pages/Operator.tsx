/**
 * The operator console (ADMIN). The menu shows it to administrators only, but the API is what
 * refuses a customer: every query here answers FORBIDDEN to anyone else.
 */
import { useEffect, useRef, useState, type FormEvent } from "react";
import { request } from "../api.ts";
import { ApiError } from "../errors.ts";
import { formatPaise, rupeesToPaise } from "../money.ts";
import {
  AuditLog,
  DeadLetters,
  DepositFunds,
  FraudChecks,
  ReplayDeadLetters,
  Users,
  VerifyAuditChain,
  type AuditRecord,
  type DeadLetter,
  type UserWithAccounts,
} from "../operations.ts";
import { ErrorNotice, Loading, PageHeading, formatDateTime, useAction, useQuery } from "../ui.tsx";

export function Operator() {
  return (
    <main>
      <PageHeading>Operator console</PageHeading>
      <Deposit />
      <FraudList />
      <DeadLetterList />
      <AuditTrail />
      <ChainCheck />
    </main>
  );
}

/** Users per page of `users` (the API's default). */
const USERS_PAGE = 50;
/** Most pages the console loads (1,000 users): a bound on the list, not on the bank. */
const USERS_PAGES_MAX = 20;

/** The first `pages` pages of users, each after the last id of the one before. */
async function loadUsers(pages: number): Promise<{ users: UserWithAccounts[]; hasMore: boolean }> {
  const users: UserWithAccounts[] = [];
  let after: string | null = null;
  for (let page = 0; page < pages; page++) {
    const batch: UserWithAccounts[] = (await request(Users, { first: USERS_PAGE, after })).users;
    users.push(...batch);
    if (batch.length < USERS_PAGE) return { users, hasMore: false };
    after = batch[batch.length - 1]!.id;
  }
  return { users, hasMore: true };
}

/** Users page by page; a reload (after a deposit) fetches every page shown again, so balances stay current. */
function usePagedUsers() {
  const [pages, setPages] = useState(1);
  const [generation, setGeneration] = useState(0);
  const [state, setState] = useState<{ users?: UserWithAccounts[]; hasMore: boolean; error?: unknown; loading: boolean }>({
    hasMore: false,
    loading: true,
  });
  useEffect(() => {
    let live = true;
    setState((previous) => ({ ...previous, loading: true }));
    loadUsers(pages).then(
      (loaded) => live && setState({ ...loaded, loading: false }),
      (error: unknown) => live && setState((previous) => ({ ...previous, error, loading: false })),
    );
    return () => {
      live = false;
    };
  }, [pages, generation]);
  return {
    ...state,
    canLoadMore: state.hasMore && pages < USERS_PAGES_MAX,
    loadMore: () => setPages((count) => Math.min(count + 1, USERS_PAGES_MAX)),
    reload: () => setGeneration((value) => value + 1),
  };
}

function Deposit() {
  const users = usePagedUsers();
  const [accountId, setAccountId] = useState("");
  const [amount, setAmount] = useState("");
  const { busy, error, setError, run } = useAction();
  const [result, setResult] = useState<string>();
  const intentKey = useRef<string | undefined>(undefined);
  const accounts = users.users?.flatMap((user) => user.accounts.map((account) => ({ ...account, email: user.email }))) ?? [];
  function submit(event: FormEvent) {
    event.preventDefault();
    const parsed = rupeesToPaise(amount);
    if (!parsed.ok) return setError(new ApiError("BAD_USER_INPUT", parsed.reason));
    void run(async () => {
      // One deposit per intent, like transfers: a retry or a double click deposits once.
      const idempotencyKey = (intentKey.current ??= `web-deposit-${crypto.randomUUID()}`);
      const { depositFunds } = await request(DepositFunds, { accountId, amountMinor: parsed.paise, idempotencyKey });
      intentKey.current = undefined;
      setResult(
        `Deposited ${formatPaise(parsed.paise)}; the balance of ${depositFunds.maskedNumber} is now ${formatPaise(depositFunds.balance.minor)}.`,
      );
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
        {users.canLoadMore && (
          <button type="button" onClick={users.loadMore} disabled={users.loading}>
            Show {USERS_PAGE} more customers
          </button>
        )}
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
  const sorted = [...(checks.data?.fraudChecks ?? [])].sort(
    (a, b) => Number(a.passed) - Number(b.passed) || b.checkedAt.localeCompare(a.checkedAt),
  );
  return (
    <section aria-labelledby="fraud-heading">
      <h2 id="fraud-heading">Fraud checks</h2>
      <ErrorNotice error={checks.error} onRetry={checks.reload} />
      {checks.loading && !checks.data && <Loading what="fraud checks" />}
      {checks.data && sorted.length === 0 && <p>No checks yet.</p>}
      {sorted.length > 0 && (
        <div className="table-scroll">
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
        </div>
      )}
      <button type="button" onClick={checks.reload}>
        Refresh fraud checks
      </button>
    </section>
  );
}

/** The most dead letters the console lists (the API's page bound); the count per consumer says if more wait. */
const DEAD_LETTERS_SHOWN = 500;

function DeadLetterList() {
  const letters = useQuery(DeadLetters, { consumer: null, first: DEAD_LETTERS_SHOWN });
  const [result, setResult] = useState<string>();
  const byConsumer = new Map<string, DeadLetter[]>();
  for (const letter of letters.data?.deadLetters ?? [])
    byConsumer.set(letter.consumer, [...(byConsumer.get(letter.consumer) ?? []), letter]);
  const replayed = (sentence: string) => {
    setResult(sentence);
    letters.reload();
  };
  return (
    <section aria-labelledby="dlq-heading" className="dead-letters">
      <h2 id="dlq-heading">Dead letters</h2>
      <p className="hint">
        Events a consumer gave up on after its last delivery. Fix the cause first, then replay: each event is published again, and consumers
        that already applied it skip it.
      </p>
      <ErrorNotice error={letters.error} onRetry={letters.reload} />
      {letters.loading && !letters.data && <Loading what="dead letters" />}
      {letters.data && byConsumer.size === 0 && <p>No dead letters.</p>}
      {[...byConsumer].map(([consumer, list]) => (
        <ConsumerDeadLetters key={consumer} consumer={consumer} letters={list} onReplayed={replayed} />
      ))}
      {letters.data?.deadLetters.length === DEAD_LETTERS_SHOWN && (
        <p className="hint">Showing the first {DEAD_LETTERS_SHOWN}; a replay reports how many still wait.</p>
      )}
      {result && <p role="status">{result}</p>}
      <button type="button" onClick={letters.reload}>
        Refresh dead letters
      </button>
    </section>
  );
}

/** One consumer's dead letters and their replay, confirmed in place (no browser dialog). */
/** One dead letter: where it came from, when and after how many deliveries it died, and why. */
function DeadLetterItem({ letter }: { letter: DeadLetter }) {
  return (
    <li>
      <dl className="facts">
        <dt>Event</dt>
        <dd>
          {letter.eventType ?? letter.subject} <span className="hint">from {letter.stream}</span>
        </dd>
        <dt>Died</dt>
        <dd>
          {formatDateTime(letter.deadLetteredAt)} after {letter.deliveryCount} deliver{letter.deliveryCount === 1 ? "y" : "ies"}
        </dd>
        <dt>Last error</dt>
        <dd>{letter.lastError || "none recorded"}</dd>
        {letter.correlationId && (
          <>
            <dt>Correlation</dt>
            <dd className="number">{letter.correlationId}</dd>
          </>
        )}
      </dl>
    </li>
  );
}

function ConsumerDeadLetters({
  consumer,
  letters,
  onReplayed,
}: {
  consumer: string;
  letters: DeadLetter[];
  onReplayed: (sentence: string) => void;
}) {
  const [confirming, setConfirming] = useState(false);
  const { busy, error, run } = useAction();
  const confirmButton = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (confirming) confirmButton.current?.focus();
  }, [confirming]);
  const headingId = `dlq-${consumer}`;
  const count = `${letters.length} dead letter${letters.length === 1 ? "" : "s"}`;
  const replay = () =>
    run(async () => {
      // By consumer, not by the ids shown: letters that died since for the same cause go too.
      const { replayed, remaining, auditEventId } = (await request(ReplayDeadLetters, { consumer, ids: null })).replayDeadLetters;
      setConfirming(false);
      onReplayed(
        `Replayed ${replayed} dead letter${replayed === 1 ? "" : "s"} of ${consumer}; ${remaining} still waiting.` +
          (auditEventId ? ` Recorded in the audit log as event ${auditEventId}.` : ""),
      );
    });
  return (
    <article aria-labelledby={headingId} className="card">
      <h3 id={headingId}>
        {consumer} <span className="badge">{letters.length}</span>
      </h3>
      <ul aria-label={`Dead letters of ${consumer}`} className="letters">
        {letters.map((letter) => (
          <DeadLetterItem key={letter.id} letter={letter} />
        ))}
      </ul>
      <ErrorNotice error={error} />
      {confirming ? (
        <fieldset aria-label={`Confirm the replay of ${consumer}`} className="notice">
          <p>
            Replay {count} of {consumer}? Do it only once the cause is fixed; the replay is recorded in the audit log under your name.
          </p>
          <button type="button" ref={confirmButton} onClick={replay} disabled={busy}>
            {busy ? "Replaying…" : `Yes, replay ${count}`}
          </button>
          <button type="button" onClick={() => setConfirming(false)} disabled={busy}>
            Cancel
          </button>
        </fieldset>
      ) : (
        <button type="button" onClick={() => setConfirming(true)}>
          Replay dead letters of {consumer}
        </button>
      )}
    </article>
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
              <strong>
                #{record.seq} {record.type}
              </strong>{" "}
              · {formatDateTime(record.occurredAt)}
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
      setResult(
        valid
          ? `The audit chain is intact: ${checked} records checked.`
          : `The audit chain is BROKEN at record #${firstBrokenSeq} (${checked} checked).`,
      );
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
