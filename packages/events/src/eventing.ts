import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Lifecycle, Logger, Metrics } from "@vaultpay/kit";
import { EventConsumer, type EventConsumerOptions } from "./consumer.ts";
import { connectJetStream, type NatsConnection } from "./nats.ts";
import { OutboxRelay } from "./outbox.ts";
import type { SqlDatabase, SqlExecutor } from "./sql.ts";
import { DEFAULT_STREAM_LIMITS, type StreamLimits } from "./streams.ts";

export interface Eventing<Tx extends SqlExecutor> {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  relay: OutboxRelay;
  /** Starts a durable consumer that stops (drains) on shutdown before the relay and NATS close. */
  consume(
    options: Pick<EventConsumerOptions<Tx>, "name" | "stream" | "filterSubject" | "handle"> & Partial<EventConsumerOptions<Tx>>,
  ): Promise<EventConsumer<Tx>>;
  connected(): boolean;
  /** The durables this process consumes with (for lag metrics). */
  consumers(): Array<{ name: string; stream: string }>;
}

/**
 * A service's link to JetStream: the connection, the streams, the outbox relay for its database and
 * its consumers, registered with the lifecycle so shutdown drains consumers, flushes the relay and
 * then closes the connection.
 */
export async function startEventing<Tx extends SqlExecutor>(options: {
  natsUrl: string;
  name: string;
  logger: Logger;
  lifecycle: Lifecycle;
  db: SqlDatabase<Tx>;
  metrics?: Metrics;
  /** The streams' copies, bytes and age (streamLimitsOf the NATS_STREAM_* settings). */
  streamLimits?: StreamLimits;
}): Promise<Eventing<Tx>> {
  const { logger, lifecycle, db } = options;
  const { nc, js, jsm } = await connectJetStream(options.natsUrl, options.name, logger, options.streamLimits ?? DEFAULT_STREAM_LIMITS);
  lifecycle.onShutdown("nats", () => nc.drain());
  const relay = new OutboxRelay({ db, js, logger });
  const durables: Array<{ name: string; stream: string }> = [];
  relay.start();
  lifecycle.onShutdown("outbox relay", () => relay.stop());
  return {
    nc,
    js,
    jsm,
    relay,
    connected: () => !nc.isClosed() && nc.info !== undefined,
    consumers: () => [...durables],
    async consume(consumerOptions) {
      const consumer = new EventConsumer<Tx>({
        db,
        js,
        jsm,
        logger,
        // The events the transaction appended go out at once (none for a consumer that emits
        // nothing: audit, notices), without a relay transaction per hop of the saga.
        afterCommit: ({ events }) => relay.publishCommitted(events),
        metrics: options.metrics,
        ...consumerOptions,
      });
      await consumer.start();
      durables.push({ name: consumerOptions.name, stream: consumerOptions.stream });
      lifecycle.onShutdown(`consumer ${consumerOptions.name}`, () => consumer.stop());
      return consumer;
    },
  };
}
