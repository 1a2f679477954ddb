/**
 * What transactions consumes: accounts' answers (and new accounts for the directory) and the fraud
 * verdict (a failed one is unwound here; accounts credits a passed one); plus the sweeper that
 * retries or compensates overdue steps. Emits through the outbox: transaction.initiated /
 * refund.requested (commands to accounts; credit.requested only for transfers from before),
 * fraud.check.requested, transaction.status.changed, transaction.completed, transaction.failed.
 */
import { errorSummary, isInfrastructureUnavailable, runWithContext, type Logger } from "@vaultpay/kit";
import {
  BATCHED_CONSUMER,
  type Event,
  type EventScope,
  type Eventing,
  type SqlExecutor,
  inEventContext,
  isPassedVerdict,
  queuedWaitMs,
} from "@vaultpay/events";
import type { Saga } from "./saga.ts";
import { recordAccount } from "./service.ts";
import { BatchSagaStore, lockOverdue, sagaStore, type Db } from "./store.ts";

export async function startSagaConsumers<T extends SqlExecutor>(eventing: Eventing<T>, saga: Saga): Promise<void> {
  await eventing.consume({
    name: ACCOUNTS_CONSUMER,
    stream: "ACCOUNTS",
    filterSubject: "account.>",
    // Deposits and number reveals pass by without a transaction.
    accepts: [
      "account.created",
      "account.debited",
      "account.debit.rejected",
      "account.credited",
      "account.credit.rejected",
      "account.refunded",
      "account.refund.rejected",
    ],
    handle: (event, tx) => handleBatch(saga, ACCOUNTS_CONSUMER, [event], tx, inEventContext),
    handleBatch: (events, tx, within) => handleBatch(saga, ACCOUNTS_CONSUMER, events, tx, within),
    // handleBatch records the events as processed with its first statement (preloadRecording).
    deduplicatesItself: true,
    ...BATCHED_CONSUMER,
  });
  await eventing.consume({
    name: FRAUD_CONSUMER,
    stream: "FRAUD",
    filterSubject: "fraud.check.completed",
    // A passed verdict is accounts' to credit: it passes by here without a transaction.
    acts: (event) => !isPassedVerdict(event),
    handle: (event, tx) => handleBatch(saga, FRAUD_CONSUMER, [event], tx, inEventContext),
    handleBatch: (events, tx, within) => handleBatch(saga, FRAUD_CONSUMER, events, tx, within),
    deduplicatesItself: true,
    ...BATCHED_CONSUMER,
  });
}

/** The durables of the saga's answers; replicas of transactions share them. */
const ACCOUNTS_CONSUMER = "transactions-accounts";
const FRAUD_CONSUMER = "transactions-fraud";

/**
 * A batch of the saga's events in one transaction: its transfers locked and read at once, each
 * event handled in order under its own context (the events it emits name it as their cause), the
 * transfers' new state written at the end (BatchSagaStore).
 */
async function handleBatch(saga: Saga, consumer: string, events: readonly Event[], tx: SqlExecutor, within: EventScope): Promise<void> {
  const store = new BatchSagaStore(tx);
  // Recorded as processed in the same statement that locks the transfers: a repeated event is skipped.
  const fresh = await store.preloadRecording(
    consumer,
    events,
    events.flatMap((event) => ("transferId" in event.data && typeof event.data.transferId === "string" ? [event.data.transferId] : [])),
  );
  for (const event of events) {
    // First delivery of each id only: a batch can hold the same event twice.
    if (!fresh.delete(event.id.toLowerCase())) continue;
    await within(event, () => (event.type === "account.created" ? recordAccount(tx, event.data) : saga.handle(store, event)));
  }
  await store.flush();
}

/**
 * The subjects of the saga's commands and of the verdict: the durables that filter on them carry
 * its steps (accounts' command durables, fraud's checks, accounts' and transactions' verdicts).
 * Audit's and the notices' durables read wider or other subjects and are not the saga's queues.
 */
const STEP_SUBJECTS: ReadonlySet<string> = new Set([
  "transaction.initiated",
  "transaction.credit.requested",
  "transaction.refund.requested",
  "fraud.check.requested",
  "fraud.check.completed",
]);

/** What bounds the sweeper's question to JetStream: past it, the sweep goes on as if nothing were queued. */
const QUEUED_WAIT_TIMEOUT_MS = 1_000;

/**
 * How long the saga's queues have held their oldest messages, added up over its durables (the
 * command durables and transactions' answers): what Saga.timeout weighs before sending a command
 * again. Unknown (NATS unreachable, too slow) reads as 0: the command is sent again, as before.
 */
export async function sagaQueuedMs(jsm: Eventing<SqlExecutor>["jsm"], logger: Logger): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const measured = queuedWaitMs(
    jsm,
    ["TRANSACTIONS", "FRAUD", "ACCOUNTS"],
    (consumer) => consumer.name === ACCOUNTS_CONSUMER || STEP_SUBJECTS.has(consumer.config.filter_subject ?? ""),
  );
  const timedOut = new Promise<number>((resolve) => {
    timer = setTimeout(() => resolve(0), QUEUED_WAIT_TIMEOUT_MS);
  });
  try {
    return await Promise.race([measured, timedOut]);
  } catch (error) {
    logger.warn({ reason: errorSummary(error) }, "saga sweep: the queues' wait is unknown; overdue commands are sent again");
    return 0;
  } finally {
    clearTimeout(timer);
    measured.catch(() => undefined);
  }
}

/**
 * Every interval, overdue steps are retried or compensated in batches; replicas share the work
 * through SKIP LOCKED. `queuedMs` (sagaQueuedMs) is asked once per sweep that finds a step
 * overdue. Runs until stopped; a failing sweep is logged and tried again.
 */
export function startSweeper(options: {
  db: Db;
  saga: Saga;
  logger: Logger;
  intervalMs: number;
  afterCommit: () => void;
  queuedMs?: () => Promise<number>;
  batchSize?: number;
}) {
  const { db, saga, logger, intervalMs } = options;
  const batchSize = options.batchSize ?? 20;
  let stopped = false;
  let running: Promise<void> | undefined;
  const sweep = async () => {
    let queued: Promise<number> | undefined;
    for (;;) {
      const handled = await db.$transaction(
        async (tx) => {
          const overdue = await lockOverdue(tx, batchSize);
          if (overdue.length === 0) return 0;
          queued ??= options.queuedMs?.() ?? Promise.resolve(0);
          const queuedMs = await queued;
          for (const transfer of overdue) {
            await runWithContext({ correlationId: transfer.correlationId, actor: { userId: transfer.userId } }, () =>
              saga.timeout(sagaStore(tx), transfer, queuedMs),
            );
          }
          return overdue.length;
        },
        { timeout: 30_000, maxWait: 10_000 },
      );
      if (handled > 0) options.afterCommit();
      if (handled < batchSize || stopped) return;
    }
  };
  const timer = setInterval(() => {
    if (running) return; // one sweep at a time; a slow one delays the next tick instead of piling up
    running = sweep()
      .catch((error: unknown) =>
        isInfrastructureUnavailable(error)
          ? logger.warn({ reason: errorSummary(error) }, "saga sweep skipped: database unavailable")
          : logger.error({ err: error }, "saga sweep failed"),
      )
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
