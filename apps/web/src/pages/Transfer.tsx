/** One transfer's live timeline, pushed by the transferStatusChanged subscription (no reload). */
import { useEffect, useState } from "react";
import { request, subscribe } from "../api.ts";
import { formatPaise } from "../money.ts";
import { TransferById, TransferStatusChanged, type Transfer as TransferData, type TransferStatus } from "../operations.ts";
import { ErrorNotice, PageHeading, formatDateTime } from "../ui.tsx";
import { referenceOf } from "./Send.tsx";

export const STATUS_TEXT: Record<TransferStatus, string> = {
  PENDING: "Pending: received, checking your balance",
  DEBITED: "Debited: taken from your account, safety checks running",
  COMPLETED: "Completed: the money has arrived",
  FAILED: "Failed: the money was returned to your account",
  REJECTED: "Rejected: nothing was taken from your account",
};
/** The same steps told to the customer the money was paid to (who sees a transfer once COMPLETED). */
const RECEIVED_TEXT: Record<TransferStatus, string> = {
  ...STATUS_TEXT,
  PENDING: "Pending: the sender started it",
  DEBITED: "Debited: taken from the sender's account, safety checks running",
  COMPLETED: "Completed: the money is in your account",
};
const TERMINAL = new Set<TransferStatus>(["COMPLETED", "FAILED", "REJECTED"]);

export function Transfer({ id }: { id: string }) {
  const [transfer, setTransfer] = useState<TransferData>();
  const [steps, setSteps] = useState<Array<{ status: TransferStatus; at: string }>>([]);
  const [error, setError] = useState<unknown>();
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    let lastStatus: TransferStatus | undefined;
    const seen = (next: TransferData) => {
      if (!live) return;
      lastStatus = next.status;
      setTransfer(next);
      setSteps((previous) =>
        previous.some((step) => step.status === next.status) ? previous : [...previous, { status: next.status, at: next.updatedAt }],
      );
    };
    setError(undefined);
    // The subscription first replays what already happened, in order, then pushes each change.
    const stop = subscribe(
      TransferStatusChanged,
      { id },
      {
        next: (data) => seen(data.transferStatusChanged),
        error: (caught) => live && setError(caught),
        // The gateway ends a subscription after its longest life; one still running is followed again.
        complete: () => live && lastStatus !== undefined && !TERMINAL.has(lastStatus) && setAttempt((value) => value + 1),
      },
    );
    request(TransferById, { id }).then(
      (data) => data.transfer && live && setTransfer((current) => current ?? data.transfer!),
      (caught: unknown) => live && setError(caught),
    );
    return () => {
      live = false;
      stop();
    };
  }, [id, attempt]);

  const finished = transfer && TERMINAL.has(transfer.status);
  const received = transfer?.direction === "RECEIVED";
  const stepText = received ? RECEIVED_TEXT : STATUS_TEXT;
  return (
    <main className="narrow">
      <PageHeading>
        {received ? "Received" : "Transfer"}{" "}
        {transfer ? `${received ? "+" : ""}${formatPaise(transfer.amount.minor, transfer.amount.currency)}` : ""}
      </PageHeading>
      {transfer && <Facts id={id} transfer={transfer} />}
      <h2 id="timeline-heading">Timeline</h2>
      <ol className="timeline" aria-labelledby="timeline-heading" aria-live="polite" data-testid="timeline">
        {steps.map((step) => (
          <li key={step.status} data-status={step.status}>
            <strong>{step.status}</strong> — {stepText[step.status]} <span className="hint">({formatDateTime(step.at)})</span>
          </li>
        ))}
        {!finished && <li className="hint">Waiting for the next step…</li>}
      </ol>
      {transfer?.failureReason && (
        <p role="alert" className="notice error">
          Why: {transfer.failureReason}
        </p>
      )}
      {transfer?.fraudCheck && !transfer.fraudCheck.passed && (
        <div className="notice error">
          <p>Our safety checks stopped this transfer (risk score {transfer.fraudCheck.riskScore} of 100):</p>
          <ul>
            {transfer.fraudCheck.reasons.map((reason) => (
              <li key={reason}>{reason}</li>
            ))}
          </ul>
        </div>
      )}
      <ErrorNotice error={error} onRetry={() => setAttempt((value) => value + 1)} />
    </main>
  );
}

/** Where the money went from and to, when, the sender's reference and the status now. */
function Facts({ id, transfer }: { id: string; transfer: TransferData }) {
  return (
    <dl className="facts">
      <dt>From</dt>
      <dd>{transfer.fromMaskedNumber}</dd>
      <dt>To</dt>
      <dd>{transfer.toMaskedNumber}</dd>
      <dt>Started</dt>
      <dd>{formatDateTime(transfer.createdAt)}</dd>
      {referenceOf(id) && (
        <>
          <dt>Reference</dt>
          <dd data-testid="reference" className="number">
            {referenceOf(id)}
          </dd>
        </>
      )}
      <dt>Status</dt>
      <dd data-testid="transfer-status">{transfer.status}</dd>
    </dl>
  );
}
