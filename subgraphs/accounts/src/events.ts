/**
 * What accounts emits and consumes. Emitting: an event is appended to the outbox in the same
 * transaction as the change it describes. Consuming: the saga commands of the transactions
 * service, each answered by exactly one account.* event per transfer and step.
 */
import { BATCHED_CONSUMER, appendToOutbox, createEvent, type Event, type EventData, type EventType, type Eventing } from "@vaultpay/events";
import type { Logger } from "@vaultpay/kit";
import { formatMinorUnits, parseMinorUnits } from "@vaultpay/money";
import type { Tx } from "./db.ts";
import type { Account } from "./accounts.ts";
import { credit, debit, refund, type Decision } from "./ledger.ts";
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

const SAGA_COMMANDS = ["transaction.initiated", "transaction.credit.requested", "transaction.refund.requested"] as const;

function isSagaCommand(event: Event): event is SagaCommand {
  return (SAGA_COMMANDS as readonly string[]).includes(event.type);
}

type Applied = "account.debited" | "account.credited" | "account.refunded";
type Rejected = "account.debit.rejected" | "account.credit.rejected" | "account.refund.rejected";

/** One saga step: on which account, how to decide it, and how to answer. */
interface StepPlan {
  step: SagaStep;
  accountId: string;
  decide: (account: Account | undefined) => Promise<Decision<string>>;
  applied: Applied;
  rejected: Rejected;
}

function planOf(command: SagaCommand, tx: Tx, amountMinor: bigint): StepPlan {
  const { transferId } = command.data;
  switch (command.type) {
    case "transaction.initiated": {
      const { fromAccountId, currency, userId } = command.data;
      return {
        step: "DEBIT",
        accountId: fromAccountId,
        decide: async (account) => {
          // The saga gave up on this debit and asked for a refund, which was decided first (a
          // late or redelivered debit): never take money for a transfer that is being unwound.
          if (await findSagaDecision(tx, transferId, "REFUND")) return { ok: false, reason: "TRANSFER_CANCELLED" };
          return debit(account, { amountMinor, currency, userId });
        },
        applied: "account.debited",
        rejected: "account.debit.rejected",
      };
    }
    case "transaction.credit.requested":
      return {
        step: "CREDIT",
        accountId: command.data.toAccountId,
        decide: async (account) => credit(account, amountMinor, await transferHistory(tx, transferId)),
        applied: "account.credited",
        rejected: "account.credit.rejected",
      };
    case "transaction.refund.requested":
      return {
        step: "REFUND",
        accountId: command.data.fromAccountId,
        decide: async (account) => {
          const history = await transferHistory(tx, transferId);
          // Only the account this transfer debited gets the money back.
          if (!account || history.debitAccountId !== account.id) return { ok: false, reason: "DEBIT_NOT_FOUND" };
          return refund(account, amountMinor, history);
        },
        applied: "account.refunded",
        rejected: "account.refund.rejected",
      };
  }
}

/**
 * Runs one saga command inside the consumer's transaction. Each step of a transfer is decided once
 * (saga_decision) under a lock on the transfer and on the account, and the same answer is re-sent
 * for a repeated command, even one re-published with a new event id; the journal's unique
 * (transfer, kind, account) is the backstop under that.
 */
export async function handleSagaCommand(event: Event, tx: Tx, logger: Logger): Promise<void> {
  // One filter subject per consumer (NATS 2.9): other transaction.* events pass by.
  if (!isSagaCommand(event)) return;
  const { transferId } = event.data;
  const amountMinor = parseMinorUnits(event.data.amountMinor);
  const plan = planOf(event, tx, amountMinor);
  await lockTransfer(tx, transferId);
  const account = await lockAccount(tx, plan.accountId);
  const decided = await decideOnce(tx, transferId, plan.step, plan.accountId, amountMinor, logger, async () => {
    const decision = await plan.decide(account);
    if (!decision.ok) return decision.reason;
    await applyMovement(tx, { accountId: plan.accountId, kind: plan.step, amountMinor, balanceAfterMinor: decision.balanceAfterMinor, transferId });
    return null;
  });
  const answer = { transferId, accountId: decided.accountId };
  if (decided.rejection === null) await emit(tx, plan.applied, { ...answer, amountMinor: formatMinorUnits(decided.amountMinor) });
  // The reason was produced by the domain for this very step, so it is one of its event's reasons.
  else await emit(tx, plan.rejected, { ...answer, reason: decided.rejection } as EventData<Rejected>);
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
    // The status changes and outcomes on the same subjects pass by without a transaction.
    accepts: SAGA_COMMANDS,
    handle: (event, tx) => handleSagaCommand(event, tx, logger),
    ...BATCHED_CONSUMER,
  });
}
