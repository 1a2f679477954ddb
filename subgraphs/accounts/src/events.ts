/**
 * What accounts emits and consumes. Emitting: an event is appended to the outbox in the same
 * transaction as the change it describes. Consuming: the saga commands of the transactions
 * service, each answered by exactly one account.* event per transfer and step.
 */
import { appendToOutbox, createEvent, type Event, type EventData, type EventType, type Eventing } from "@vaultpay/events";
import type { Logger } from "@vaultpay/kit";
import { formatMinorUnits, parseMinorUnits } from "@vaultpay/money";
import type { Tx } from "./db.ts";
import { credit, debit, refund } from "./ledger.ts";
import {
  applyMovement,
  findSagaDecision,
  lockAccount,
  lockTransfer,
  recordSagaDecision,
  transferHistory,
  type SagaDecisionRecord,
  type SagaStep,
} from "./store.ts";

export async function emit<T extends EventType>(tx: Tx, type: T, data: EventData<T>): Promise<void> {
  await appendToOutbox(tx, createEvent(type, data));
}

/** The durable consumer of the saga commands; replicas of accounts share it. */
export const SAGA_CONSUMER = "accounts-saga";

type SagaCommand = Event<"transaction.initiated"> | Event<"transaction.credit.requested"> | Event<"transaction.refund.requested">;

function isSagaCommand(event: Event): event is SagaCommand {
  return event.type === "transaction.initiated" || event.type === "transaction.credit.requested" || event.type === "transaction.refund.requested";
}

/**
 * Runs one saga command inside the consumer's transaction. Each step of a transfer is decided once
 * (saga_decision) and the same answer is re-sent for a repeated command, even one re-published with
 * a new event id; the journal's unique (transfer, kind, account) is the backstop under that.
 */
export async function handleSagaCommand(event: Event, tx: Tx, logger: Logger): Promise<void> {
  // One filter subject per consumer (NATS 2.9): other transaction.* events pass by.
  if (!isSagaCommand(event)) return;
  const { transferId } = event.data;
  await lockTransfer(tx, transferId);
  const amountMinor = parseMinorUnits(event.data.amountMinor);
  switch (event.type) {
    case "transaction.initiated": {
      const { fromAccountId, currency, userId } = event.data;
      const account = await lockAccount(tx, fromAccountId);
      const decided = await decideOnce(tx, transferId, "DEBIT", fromAccountId, amountMinor, logger, async () => {
        const decision = debit(account, { amountMinor, currency, userId });
        if (!decision.ok) return decision.reason;
        await applyMovement(tx, { accountId: fromAccountId, kind: "DEBIT", amountMinor, balanceAfterMinor: decision.balanceAfterMinor, transferId });
        return null;
      });
      const answer = { transferId, accountId: decided.accountId };
      if (decided.rejection === null) await emit(tx, "account.debited", { ...answer, amountMinor: formatMinorUnits(decided.amountMinor) });
      else await emit(tx, "account.debit.rejected", { ...answer, reason: decided.rejection as EventData<"account.debit.rejected">["reason"] });
      return;
    }
    case "transaction.credit.requested": {
      const { toAccountId } = event.data;
      const account = await lockAccount(tx, toAccountId);
      const decided = await decideOnce(tx, transferId, "CREDIT", toAccountId, amountMinor, logger, async () => {
        const decision = credit(account, amountMinor, await transferHistory(tx, transferId));
        if (!decision.ok) return decision.reason;
        await applyMovement(tx, { accountId: toAccountId, kind: "CREDIT", amountMinor, balanceAfterMinor: decision.balanceAfterMinor, transferId });
        return null;
      });
      const answer = { transferId, accountId: decided.accountId };
      if (decided.rejection === null) await emit(tx, "account.credited", { ...answer, amountMinor: formatMinorUnits(decided.amountMinor) });
      else await emit(tx, "account.credit.rejected", { ...answer, reason: decided.rejection as EventData<"account.credit.rejected">["reason"] });
      return;
    }
    case "transaction.refund.requested": {
      const { fromAccountId } = event.data;
      const account = await lockAccount(tx, fromAccountId);
      const decided = await decideOnce(tx, transferId, "REFUND", fromAccountId, amountMinor, logger, async () => {
        const history = await transferHistory(tx, transferId);
        // Only the account this transfer debited gets the money back.
        if (!account || history.debitAccountId !== account.id) return "DEBIT_NOT_FOUND";
        const decision = refund(account, amountMinor, history);
        if (!decision.ok) return decision.reason;
        await applyMovement(tx, { accountId: fromAccountId, kind: "REFUND", amountMinor, balanceAfterMinor: decision.balanceAfterMinor, transferId });
        return null;
      });
      const answer = { transferId, accountId: decided.accountId };
      if (decided.rejection === null) await emit(tx, "account.refunded", { ...answer, amountMinor: formatMinorUnits(decided.amountMinor) });
      else await emit(tx, "account.refund.rejected", { ...answer, reason: decided.rejection as EventData<"account.refund.rejected">["reason"] });
      return;
    }
  }
}

/** The recorded decision of a step, or a new one from `decide` (which applies it) recorded now. */
async function decideOnce(
  tx: Tx,
  transferId: string,
  step: SagaStep,
  accountId: string,
  amountMinor: bigint,
  logger: Logger,
  decide: () => Promise<string | null>,
): Promise<SagaDecisionRecord> {
  const earlier = await findSagaDecision(tx, transferId, step);
  if (earlier) {
    if (earlier.accountId !== accountId || earlier.amountMinor !== amountMinor) {
      // The same transfer and step with another body: answered as first decided, never applied again.
      logger.warn({ transferId, step }, "saga command repeated with a different body; answering the first decision");
    }
    return earlier;
  }
  const decision: SagaDecisionRecord = { accountId, amountMinor, rejection: await decide() };
  await recordSagaDecision(tx, transferId, step, decision);
  return decision;
}

/** Starts the saga consumer: one durable on `transaction.>` (NATS 2.9 takes one filter subject). */
export function startSagaConsumer(eventing: Eventing<Tx>, logger: Logger) {
  return eventing.consume({
    name: SAGA_CONSUMER,
    stream: "TRANSACTIONS",
    filterSubject: "transaction.>",
    handle: (event, tx) => handleSagaCommand(event, tx, logger),
  });
}
