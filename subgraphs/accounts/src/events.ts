/**
 * What accounts emits and consumes. Emitting: an event is appended to the outbox in the same
 * transaction as the change it describes. Consuming: the saga commands of the transactions
 * service, and fraud's verdicts (a passed one is credited here), each answered by exactly one
 * account.* event per transfer and step.
 */
import {
  BATCHED_CONSUMER,
  appendToOutbox,
  isPassedVerdict,
  createEvent,
  type Event,
  type EventData,
  type EventScope,
  type EventType,
  type Eventing,
  type SqlExecutor,
  durableInfo,
  inEventContext,
} from "@vaultpay/events";
import type { Logger } from "@vaultpay/kit";
import { formatMinorUnits, parseMinorUnits } from "@vaultpay/money";
import { SagaBook, creditOnVerdict, type SagaStep, type StepCommand } from "./saga.ts";
import { loadSagaRecords, lockTransfers, writeSagaChanges } from "./store.ts";

export async function emit<T extends EventType>(tx: SqlExecutor, type: T, data: EventData<T>): Promise<void> {
  await appendToOutbox(tx, createEvent(type, data));
}

/** The durable consumer of the debits, and the name the command durables record processed events under; replicas share them. */
export const SAGA_CONSUMER = "accounts-saga";

type SagaCommand = Event<"transaction.initiated"> | Event<"transaction.credit.requested"> | Event<"transaction.refund.requested">;

const SAGA_COMMANDS = ["transaction.initiated", "transaction.credit.requested", "transaction.refund.requested"] as const;

function isSagaCommand(event: Event): event is SagaCommand {
  return (SAGA_COMMANDS as readonly string[]).includes(event.type);
}

type Applied = "account.debited" | "account.credited" | "account.refunded";
type Rejected = "account.debit.rejected" | "account.credit.rejected" | "account.refund.rejected";

/** The events that answer each step, whatever asked for it (a command, or a passed verdict for a credit). */
const ANSWERS: Record<SagaStep, { applied: Applied; rejected: Rejected }> = {
  DEBIT: { applied: "account.debited", rejected: "account.debit.rejected" },
  CREDIT: { applied: "account.credited", rejected: "account.credit.rejected" },
  REFUND: { applied: "account.refunded", rejected: "account.refund.rejected" },
};

/** The step a command asks for, on which account. */
function stepOf(command: SagaCommand): StepCommand {
  const amountMinor = parseMinorUnits(command.data.amountMinor);
  const { transferId } = command.data;
  switch (command.type) {
    case "transaction.initiated": {
      const { fromAccountId, toAccountId, currency, userId } = command.data;
      return { transferId, step: "DEBIT", accountId: fromAccountId, amountMinor, currency, userId, toAccountId };
    }
    case "transaction.credit.requested":
      return { transferId, step: "CREDIT", accountId: command.data.toAccountId, amountMinor };
    case "transaction.refund.requested":
      return { transferId, step: "REFUND", accountId: command.data.fromAccountId, amountMinor };
  }
}

/** An event that asks for a step, and the step. */
interface StepRequest {
  event: Event;
  step: StepCommand;
}

/**
 * Runs a batch of saga commands inside the consumer's transaction, in a fixed number of statements
 * whatever its size: lock the transfers, then read their decisions and journal and lock the
 * accounts in one statement, decide each command in order in memory (SagaBook, the ledger's rules), write balances, journal
 * rows and decisions set-based, and answer each command with exactly one account.* event (the same
 * answer for a repeated command, even one re-published with a new event id). The journal's unique
 * (transfer, kind, account) is the backstop under that.
 */
export async function handleSagaCommands(
  events: readonly Event[],
  tx: SqlExecutor,
  logger: Logger,
  within: EventScope = inEventContext,
  recordAs?: string,
): Promise<void> {
  // Only commands reach here, but a batch from a durable still on `transaction.>` (an upgrade) holds others.
  const commands = await lockFresh(tx, events.filter(isSagaCommand), recordAs);
  if (commands.length === 0) return;
  const requests = commands.map((command) => ({ event: command, step: stepOf(command) }));
  // The accounts the commands name are locked with the transfers' records, in the same round trip.
  const records = await loadSagaRecords(
    tx,
    requests.map(({ step }) => step.transferId),
    { ids: requests.map(({ step }) => step.accountId) },
  );
  await decideAndAnswer(tx, logger, within, records, requests);
}

/**
 * Locks the transfers of these events (lockTransfers) and returns the events to apply. With
 * `recordAs` (the consumer, which then deduplicates itself), the events are recorded as processed
 * in the same statement and only the new ones are returned; without it (a handler called
 * directly), all of them.
 */
async function lockFresh<T extends SagaCommand | Event<"fraud.check.completed">>(
  tx: SqlExecutor,
  events: readonly T[],
  recordAs: string | undefined,
): Promise<T[]> {
  if (events.length === 0) return [];
  const transferIds = events.map((event) => event.data.transferId);
  const fresh = await lockTransfers(tx, transferIds, recordAs === undefined ? undefined : { consumer: recordAs, events });
  return fresh ? events.filter((event) => fresh.has(event.id.toLowerCase())) : [...events];
}

/**
 * Credits the transfers whose fraud verdict passed, without a round trip through transactions: the
 * credit goes to the destination the debit's own command named, for the debited amount, decided
 * once per transfer like a credit command (a verdict sent again gets the first answer again; a
 * refund decided first refuses it). Failed verdicts pass by: transactions decides the refund and
 * the customer's reason. A verdict with no debit to credit from is left to the saga's deadline.
 */
export async function handleVerdicts(
  events: readonly Event[],
  tx: SqlExecutor,
  logger: Logger,
  within: EventScope = inEventContext,
  recordAs?: string,
): Promise<void> {
  const passed = await lockFresh(tx, events.filter(isPassedVerdict), recordAs);
  if (passed.length === 0) return;
  // The destinations of the applied debits, the accounts these verdicts credit, are locked with the records.
  const records = await loadSagaRecords(
    tx,
    passed.map((verdict) => verdict.data.transferId),
    { debitDestinations: true },
  );
  const appliedDebits = new Map(
    records.decisions
      .filter((decision) => decision.step === "DEBIT" && decision.rejection === null)
      .map((debit) => [debit.transferId, debit]),
  );
  const requests: StepRequest[] = [];
  for (const verdict of passed) {
    const { transferId } = verdict.data;
    const debit = appliedDebits.get(transferId);
    const step = debit && creditOnVerdict(debit);
    if (step) requests.push({ event: verdict, step });
    else if (debit) {
      // Decided before destinations were recorded (an upgrade): expected, and the deadline refunds it.
      logger.info({ transferId }, "passed fraud verdict for a debit without a recorded destination; left to the saga's deadline");
    } else logger.warn({ transferId }, "passed fraud verdict with no applied debit to credit from; nothing moved");
  }
  await decideAndAnswer(tx, logger, within, records, requests);
}

/** Decides each request in order on the locked accounts, writes the changes and answers each. */
async function decideAndAnswer(
  tx: SqlExecutor,
  logger: Logger,
  within: EventScope,
  records: Awaited<ReturnType<typeof loadSagaRecords>>,
  requests: readonly StepRequest[],
): Promise<void> {
  if (requests.length === 0) return;
  const book = new SagaBook(records);
  const answers = requests.map(({ event, step }) => {
    const { decision, repeatedWithOtherBody } = book.decide(step);
    if (repeatedWithOtherBody) {
      // The same transfer and step with another body: answered as first decided, never applied again.
      logger.warn(
        { transferId: step.transferId, step: step.step },
        "saga step repeated with a different body; answering the first decision",
      );
    }
    return { event, transferId: step.transferId, answers: ANSWERS[step.step], decision };
  });
  // Answered first, written after: writeSagaChanges writes the answers with the changes, in one statement.
  for (const {
    event,
    transferId,
    answers: { applied, rejected },
    decision,
  } of answers) {
    const answer = { transferId, accountId: decision.accountId };
    // Emitted in the asking event's context: the answer names it as its cause, in the same trace.
    await within(event, () =>
      decision.rejection === null
        ? emit(tx, applied, { ...answer, amountMinor: formatMinorUnits(decision.amountMinor) })
        : // The reason was produced by the domain for this very step, so it is one of its event's reasons.
          emit(tx, rejected, { ...answer, reason: decision.rejection } as EventData<Rejected>),
    );
  }
  await writeSagaChanges(tx, book.changes());
}

/** One command in its own batch (tests drive the handler this way). */
export function handleSagaCommand(event: Event, tx: SqlExecutor, logger: Logger): Promise<void> {
  return handleSagaCommands([event], tx, logger);
}

/**
 * The durables of the saga commands, one per command subject. NATS 2.9 takes one filter subject
 * per consumer, and on `transaction.>` accounts was delivered four of a happy transfer's five
 * transaction.* events (the status changes and the outcome) only to acknowledge them: stored once,
 * each was still one more delivery and one more ack through nats-server and both kernels. The
 * debits keep the name of that wide durable, and all three record what they applied under it
 * (SAGA_CONSUMER), so a command that reaches a second of them (the upgrade from the wide filter,
 * below) is recognised by its event id.
 */
export const SAGA_COMMAND_CONSUMERS = [
  { name: SAGA_CONSUMER, filterSubject: "transaction.initiated" },
  { name: "accounts-refunds", filterSubject: "transaction.refund.requested" },
  { name: "accounts-credits", filterSubject: "transaction.credit.requested" },
] as const;

/**
 * Where a new command durable starts: just after everything the wide `accounts-saga` durable has
 * acknowledged, when that durable exists (an upgrade). Refunds and credits published before the
 * upgrade and not yet handled are then delivered to their own durable before accounts-saga's
 * filter is narrowed; what accounts-saga handled past its ack floor comes again and is skipped as
 * already processed. Without it (a new installation), undefined: the whole stream, as before.
 */
async function resumeAfterWideDurable<T extends SqlExecutor>(eventing: Eventing<T>): Promise<number | undefined> {
  const wide = await durableInfo(eventing.jsm, "TRANSACTIONS", SAGA_CONSUMER);
  return wide === undefined ? undefined : wide.ack_floor.stream_seq + 1;
}

/**
 * Starts the saga command consumers. The refund and credit durables are created (where new, at
 * resumeAfterWideDurable) before accounts-saga's filter is narrowed to the debits, so no command
 * published before the upgrade is left behind by both. A replica still running the earlier code
 * widens the filter again when it starts; until the next start of this code accounts-saga then
 * also hands refunds and credits to this code's handler, which applies each once whichever durable
 * brings it.
 */
export async function startSagaConsumers<T extends SqlExecutor>(eventing: Eventing<T>, logger: Logger): Promise<void> {
  const [debits, ...others] = SAGA_COMMAND_CONSUMERS;
  const startSequence = await resumeAfterWideDurable(eventing);
  for (const { name, filterSubject } of [...others, debits]) {
    await eventing.consume({
      name,
      stream: "TRANSACTIONS",
      filterSubject,
      ...(startSequence === undefined ? {} : { startSequence }),
      // Every command type, on every durable: during an upgrade accounts-saga may still carry all of them.
      accepts: SAGA_COMMANDS,
      handle: (event, tx) => handleSagaCommand(event, tx, logger),
      // Recorded as processed, under SAGA_CONSUMER, in the statement that locks the batch's transfers (lockFresh).
      handleBatch: (events, tx, within) => handleSagaCommands(events, tx, logger, within, SAGA_CONSUMER),
      deduplicatesItself: true,
      ...BATCHED_CONSUMER,
    });
  }
}

/** The durable consumer of fraud verdicts (a passed one is credited here); replicas of accounts share it. */
export const VERDICT_CONSUMER = "accounts-verdicts";

/**
 * How far back the verdict consumer starts when it is first created: a verdict older than a saga's
 * whole FRAUD wait was already unwound by transactions' deadline (and debits from before this
 * consumer existed have no destination on record), so replaying a year of FRAUD would be work for
 * nothing. A day covers any configured step timeout many times over.
 */
const VERDICT_REPLAY_MS = 24 * 3_600_000;

/**
 * Starts the verdict consumer: the passed verdicts credit their transfers (handleVerdicts). Started
 * before the saga consumer, so its durable exists before any debit records a destination.
 */
export function startVerdictConsumer<T extends SqlExecutor>(eventing: Eventing<T>, logger: Logger) {
  return eventing.consume({
    name: VERDICT_CONSUMER,
    stream: "FRAUD",
    filterSubject: "fraud.check.completed",
    startTime: new Date(Date.now() - VERDICT_REPLAY_MS),
    // A failed verdict is transactions' to unwind: it passes by here without a transaction.
    acts: isPassedVerdict,
    handle: (event, tx) => handleVerdicts([event], tx, logger),
    // Recorded as processed in the statement that locks the batch's transfers (lockFresh).
    handleBatch: (events, tx, within) => handleVerdicts(events, tx, logger, within, VERDICT_CONSUMER),
    deduplicatesItself: true,
    ...BATCHED_CONSUMER,
  });
}
