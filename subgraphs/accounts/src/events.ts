/**
 * What accounts emits and consumes. Emitting: an event is appended to the outbox in the same
 * transaction as the change it describes. Consuming: the saga commands of the transactions
 * service, each answered by exactly one account.* event per transfer and step.
 */
import {
  BATCHED_CONSUMER,
  appendToOutbox,
  createEvent,
  type Event,
  type EventData,
  type EventScope,
  type EventType,
  type Eventing,
  type SqlExecutor,
  inEventContext,
} from "@vaultpay/events";
import type { Logger } from "@vaultpay/kit";
import { formatMinorUnits, parseMinorUnits } from "@vaultpay/money";
import { SagaBook, type StepCommand } from "./saga.ts";
import { loadSagaRecords, lockAccounts, lockTransfers, writeSagaChanges } from "./store.ts";

export async function emit<T extends EventType>(tx: SqlExecutor, type: T, data: EventData<T>): Promise<void> {
  await appendToOutbox(tx, createEvent(type, data));
}

/** The durable consumer of the saga commands; replicas of accounts share it. */
export const SAGA_CONSUMER = "accounts-saga";

type SagaCommand = Event<"transaction.initiated"> | Event<"transaction.credit.requested"> | Event<"transaction.refund.requested">;

const SAGA_COMMANDS = ["transaction.initiated", "transaction.credit.requested", "transaction.refund.requested"] as const;

function isSagaCommand(event: Event): event is SagaCommand {
  return (SAGA_COMMANDS as readonly string[]).includes(event.type);
}

type Applied = "account.debited" | "account.credited" | "account.refunded";
type Rejected = "account.debit.rejected" | "account.credit.rejected" | "account.refund.rejected";

const ANSWERS: Record<SagaCommand["type"], { applied: Applied; rejected: Rejected }> = {
  "transaction.initiated": { applied: "account.debited", rejected: "account.debit.rejected" },
  "transaction.credit.requested": { applied: "account.credited", rejected: "account.credit.rejected" },
  "transaction.refund.requested": { applied: "account.refunded", rejected: "account.refund.rejected" },
};

/** The step a command asks for, on which account. */
function stepOf(command: SagaCommand): StepCommand {
  const amountMinor = parseMinorUnits(command.data.amountMinor);
  const { transferId } = command.data;
  switch (command.type) {
    case "transaction.initiated": {
      const { fromAccountId, currency, userId } = command.data;
      return { transferId, step: "DEBIT", accountId: fromAccountId, amountMinor, currency, userId };
    }
    case "transaction.credit.requested":
      return { transferId, step: "CREDIT", accountId: command.data.toAccountId, amountMinor };
    case "transaction.refund.requested":
      return { transferId, step: "REFUND", accountId: command.data.fromAccountId, amountMinor };
  }
}

/**
 * Runs a batch of saga commands inside the consumer's transaction, in a fixed number of statements
 * whatever its size: lock the transfers, lock the accounts, read the transfers' decisions and
 * journal, decide each command in order in memory (SagaBook, the ledger's rules), write balances,
 * journal rows and decisions set-based, and answer each command with exactly one account.* event
 * (the same answer for a repeated command, even one re-published with a new event id). The
 * journal's unique (transfer, kind, account) is the backstop under that.
 */
export async function handleSagaCommands(
  events: readonly Event[],
  tx: SqlExecutor,
  logger: Logger,
  within: EventScope = inEventContext,
): Promise<void> {
  // One filter subject per consumer (NATS 2.9): other transaction.* events pass by.
  const commands = events.filter(isSagaCommand).map((command) => ({ command, step: stepOf(command) }));
  if (commands.length === 0) return;
  const transferIds = commands.map(({ step }) => step.transferId);
  await lockTransfers(tx, transferIds);
  const accounts = await lockAccounts(
    tx,
    commands.map(({ step }) => step.accountId),
  );
  const book = new SagaBook({ accounts, ...(await loadSagaRecords(tx, transferIds)) });
  const answers = commands.map(({ command, step }) => {
    const { decision, repeatedWithOtherBody } = book.decide(step);
    if (repeatedWithOtherBody) {
      // The same transfer and step with another body: answered as first decided, never applied again.
      logger.warn(
        { transferId: step.transferId, step: step.step },
        "saga command repeated with a different body; answering the first decision",
      );
    }
    return { command, decision };
  });
  await writeSagaChanges(tx, book.changes());
  for (const { command, decision } of answers) {
    const answer = { transferId: command.data.transferId, accountId: decision.accountId };
    const { applied, rejected } = ANSWERS[command.type];
    // Emitted in the command's context: the answer names it as its cause, in the same trace.
    await within(command, () =>
      decision.rejection === null
        ? emit(tx, applied, { ...answer, amountMinor: formatMinorUnits(decision.amountMinor) })
        : // The reason was produced by the domain for this very step, so it is one of its event's reasons.
          emit(tx, rejected, { ...answer, reason: decision.rejection } as EventData<Rejected>),
    );
  }
}

/** One command in its own batch (tests drive the handler this way). */
export function handleSagaCommand(event: Event, tx: SqlExecutor, logger: Logger): Promise<void> {
  return handleSagaCommands([event], tx, logger);
}

/** Starts the saga consumer: one durable on `transaction.>` (NATS 2.9 takes one filter subject). */
export function startSagaConsumer<T extends SqlExecutor>(eventing: Eventing<T>, logger: Logger) {
  return eventing.consume({
    name: SAGA_CONSUMER,
    stream: "TRANSACTIONS",
    filterSubject: "transaction.>",
    // The status changes and outcomes on the same subjects pass by without a transaction.
    accepts: SAGA_COMMANDS,
    handle: (event, tx) => handleSagaCommand(event, tx, logger),
    handleBatch: (events, tx, within) => handleSagaCommands(events, tx, logger, within),
    ...BATCHED_CONSUMER,
  });
}
