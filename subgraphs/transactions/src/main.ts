import { runSubgraphService } from "@vaultpay/service";
import { transactionsConfigSchema } from "./config.ts";
import { createDb } from "./db.ts";
import { startSagaConsumers, startSweeper, watchSagaQueues } from "./events.ts";
import { createResolvers } from "./resolvers.ts";
import { Saga } from "./saga.ts";
import { TransferService, historyLoader } from "./service.ts";
import { countTransfersByStatus } from "./store.ts";
import { longestAttemptMs } from "./transfers.ts";

await runSubgraphService({
  name: "transactions",
  schemaUrl: new URL("./schema.graphql", import.meta.url),
  configSchema: transactionsConfigSchema,
  createDb,
  wire: async (runtime) => {
    const { config, db, eventing, logger, lifecycle, metrics } = runtime;
    metrics.gauge("vaultpay_transfers", "Transfers by status", ["status"], async () => {
      const rows = await countTransfersByStatus(db);
      return rows.map((row) => ({ labels: { status: row.status }, value: row.n }));
    });
    const timings = { stepTimeoutMs: config.SAGA_STEP_TIMEOUT_MS, maxStepAttempts: config.SAGA_MAX_STEP_ATTEMPTS };
    const reached = metrics.histogram(
      "vaultpay_saga_seconds_to_status",
      "Seconds from a transfer's initiation to each status it reaches (DEBITED, COMPLETED, FAILED, REJECTED)",
      ["status"],
      [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    );
    const deadlines = metrics.counter(
      "vaultpay_saga_step_deadlines_total",
      "Saga steps whose deadline passed, by step and outcome (resent, queued: not resent, still queued; given_up: compensated)",
      ["step", "outcome"],
    );
    const saga = new Saga(timings, {
      onAnomaly: (transferId, what) => logger.error({ transferId }, `saga anomaly: ${what}`),
      onStatus: (status, seconds) => reached.observe({ status }, seconds),
      onDeadline: (step, outcome) => deadlines.inc({ step, outcome }),
    });
    const kick = () => eventing.relay.kick();
    await startSagaConsumers(eventing, saga);
    // The longest attempt's wait and a sample more.
    const queues = watchSagaQueues(
      eventing.jsm,
      logger,
      config.SAGA_SWEEP_INTERVAL_MS,
      longestAttemptMs(timings) + config.SAGA_SWEEP_INTERVAL_MS,
    );
    const sweeper = startSweeper({
      db,
      saga,
      logger,
      intervalMs: config.SAGA_SWEEP_INTERVAL_MS,
      afterCommit: kick,
      queuedSince: queues.queuedSince,
    });
    lifecycle.onShutdown("saga sweeper", async () => {
      queues.stop();
      await sweeper.stop();
    });
    const transfers = new TransferService(
      db,
      Buffer.from(config.BLIND_INDEX_KEY, "base64"),
      timings,
      (events) => eventing.relay.publishCommitted(events),
      runtime.sql,
    );
    return createResolvers(runtime, transfers);
  },
  context: async ({ caller, runtime }) => ({ caller, histories: historyLoader(runtime.db) }),
});
