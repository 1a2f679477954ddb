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
  QueueWaitHistory,
  queuedWaits,
  withBufferedOutbox,
} from "@vaultpay/events";
import type { ConsumerInfo } from "@nats-io/jetstream";
import type { Saga } from "./saga.ts";
import { recordAccount } from "./service.ts";
import { BatchSagaStore, lockOverdue, type Db } from "./store.ts";
import type { QueuedSince, SagaStep } from "./transfers.ts";

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
 * The queues a step's messages pass, each named by its durables' filter subject: the command's
 * (accounts' command durables, fraud's checks), the verdict's (accounts' and transactions' side by
 * side), and accounts' answers to transactions (`account.>`, transactions' own durable only:
 * audit's reads the same subject and is not the saga's).
 */
const STEP_HOPS: Record<Exclude<SagaStep, "NONE">, readonly string[]> = {
  DEBIT: ["transaction.initiated", "account.>"],
  FRAUD: ["fraud.check.requested", "fraud.check.completed", "account.>"],
  CREDIT: ["transaction.credit.requested", "account.>"],
  REFUND: ["transaction.refund.requested", "account.>"],
};
const COMMAND_HOPS: ReadonlySet<string> = new Set(
  Object.values(STEP_HOPS)
    .flat()
    .filter((hop) => hop !== "account.>"),
);

/** The hop a durable of the saga's streams is on, or undefined for one the saga does not wait on. */
function sagaHopOf(consumer: ConsumerInfo): string | undefined {
  if (consumer.name === ACCOUNTS_CONSUMER) return "account.>";
  const filter = consumer.config.filter_subject ?? "";
  return COMMAND_HOPS.has(filter) ? filter : undefined;
}

/** What bounds one sample of the saga's queues: past it, the sample is skipped. */
const SAMPLE_TIMEOUT_MS = 1_000;

/**
 * Samples how long the saga's queues (STEP_HOPS) have held their oldest messages every interval,
 * and keeps `keepMs` of them. `queuedSince(step, t)` adds up the longest waits since t on the hops
 * of that step, with the time of the last sample: what Saga.timeout weighs before sending a
 * command again. A sample JetStream does not answer within a second is skipped; with no samples
 * it says nothing, and the command is sent again, as before.
 */
export function watchSagaQueues(jsm: Eventing<SqlExecutor>["jsm"], logger: Logger, intervalMs: number, keepMs: number) {
  const history = new QueueWaitHistory(keepMs);
  let sampling = false;
  let failing = false;
  let stopped = false;
  const sample = async () => {
    let timer: NodeJS.Timeout | undefined;
    const at = Date.now();
    const measured = queuedWaits(jsm, ["TRANSACTIONS", "FRAUD", "ACCOUNTS"], sagaHopOf, at);
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), SAMPLE_TIMEOUT_MS);
    });
    try {
      const waits = await Promise.race([measured, timedOut]);
      if (waits) history.record(at, waits);
      failing = false;
    } catch (error) {
      if (!failing && !stopped)
        logger.warn({ reason: errorSummary(error) }, "saga queues not sampled: overdue commands are sent again without it");
      failing = true;
    } finally {
      clearTimeout(timer);
      measured.catch(() => undefined);
    }
  };
  const timer = setInterval(() => {
    if (sampling) return;
    sampling = true;
    void sample().finally(() => {
      sampling = false;
    });
  }, intervalMs);
  return {
    queuedSince: (step: SagaStep, since: Date) => {
      const sampledAt = history.lastSampledAt();
      if (sampledAt === undefined || step === "NONE") return undefined;
      return { waitedMs: history.longestSince(since.getTime(), STEP_HOPS[step]), sampledAt: new Date(sampledAt) };
    },
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}

/**
 * Every interval, overdue steps are retried or compensated in batches; replicas share the work
 * through SKIP LOCKED. `queuedSince` (watchSagaQueues) tells how long the saga's queues held
 * messages since a time. Runs until stopped; a failing sweep is logged and tried again.
 */
export function startSweeper(options: {
  db: Db;
  saga: Saga;
  logger: Logger;
  intervalMs: number;
  afterCommit: () => void;
  queuedSince?: QueuedSince;
  batchSize?: number;
}) {
  const { db, saga, logger, intervalMs } = options;
  const batchSize = options.batchSize ?? 20;
  let stopped = false;
  let running: Promise<void> | undefined;
  const sweep = async () => {
    for (;;) {
      const handled = await db.$transaction(
        async (tx) => {
          const overdue = await lockOverdue(tx, batchSize);
          // The batch's new deadlines, and the commands it sends, written in one statement at the
          // end (BatchSagaStore): under a backlog most overdue steps are only held back, and one
          // update each kept their rows locked from the consumers for a round trip each.
          const store = new BatchSagaStore(tx);
          store.adopt(overdue);
          await withBufferedOutbox(tx, async () => {
            for (const transfer of overdue) {
              await runWithContext({ correlationId: transfer.correlationId, actor: { userId: transfer.userId } }, () =>
                saga.timeout(store, transfer, options.queuedSince),
              );
            }
            await store.flush();
          });
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
