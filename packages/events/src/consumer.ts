import { AckPolicy, DeliverPolicy, type ConsumerConfig, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { runWithContext } from "@vaultpay/kit";
import type { Logger } from "@vaultpay/kit";
import { parseEvent, type Event } from "./envelope.ts";
import { publishDeadLetter } from "./dlq.ts";
import { isNotFound, type StreamName } from "./streams.ts";
import type { SqlDatabase, SqlExecutor } from "./sql.ts";

export interface EventConsumerOptions<Tx extends SqlExecutor> {
  /** Durable name, unique per service and purpose, e.g. "accounts-saga". Replicas share it. */
  name: string;
  stream: StreamName;
  /**
   * One subject filter (wildcards allowed). One, not several: multi-filter consumers need
   * nats-server 2.10, and Debian's package is 2.9; a handler ignores the types it does not need.
   */
  filterSubject: string;
  db: SqlDatabase<Tx>;
  js: JetStreamClient;
  jsm: JetStreamManager;
  logger: Logger;
  /** The effect. Runs inside the transaction that also records the event as processed. */
  handle: (event: Event, tx: Tx) => Promise<void>;
  /** Deliveries before a message goes to DLQ. */
  maxDeliver?: number;
  /** Delay before redelivery after the n-th failure (the last value repeats). */
  backoffMs?: readonly number[];
  /** Redelivery when a consumer dies holding a message. */
  ackWaitMs?: number;
  /** Messages buffered from the server per pull. */
  batchSize?: number;
  /** For a new durable: start at this stream sequence instead of the beginning (replay tools). */
  startSequence?: number;
  /** Called after a commit, e.g. to kick the outbox relay for events the handler emitted. */
  afterCommit?: () => void;
  /** Database transaction timeout for one handler run. */
  transactionTimeoutMs?: number;
}

export type ProcessOutcome = "processed" | "duplicate" | "retry" | "dead-lettered";

/**
 * An idempotent durable pull consumer. For each message: validate, then in one database transaction
 * record (consumer, event id) and run the effect; ack only after commit. A redelivery finds the id
 * recorded and is acknowledged without running the effect again. Failures are retried with back-off
 * up to maxDeliver, then the message moves to DLQ with its last error.
 *
 * The server-side max_deliver is unlimited on purpose: the DLQ decision is made here, so a message
 * whose last delivery died with the process is redelivered and dead-lettered, never silently dropped.
 */
export class EventConsumer<Tx extends SqlExecutor> {
  private readonly maxDeliver: number;
  private readonly backoffMs: readonly number[];
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: EventConsumerOptions<Tx>) {
    this.maxDeliver = options.maxDeliver ?? 5;
    this.backoffMs = options.backoffMs ?? [500, 2_000, 5_000, 15_000];
  }

  async start(): Promise<void> {
    const { js, stream, name } = this.options;
    await this.ensureDurable();
    const consumer = await js.consumers.get(stream, name);
    this.messages = await consumer.consume({ max_messages: this.options.batchSize ?? 32 });
    this.loop = (async () => {
      for await (const message of this.messages!) {
        await this.process(message);
        if (this.stopped) break;
      }
    })().catch((error: unknown) => {
      if (!this.stopped) this.options.logger.error({ err: error, consumer: name }, "consumer loop ended");
    });
  }

  /** Stops pulling and waits for the message in hand to finish (graceful drain). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.messages?.close().catch(() => undefined);
    await this.loop;
  }

  async process(message: JsMsg): Promise<ProcessOutcome> {
    const { logger, name } = this.options;
    const deliveries = message.info.deliveryCount;
    let event: Event;
    try {
      event = parseEvent(message.json());
    } catch (error) {
      // A malformed or unknown event will never succeed: no retries, straight to DLQ.
      await this.deadLetter(message, error, undefined);
      return "dead-lettered";
    }
    try {
      const outcome = await runWithContext(
        { correlationId: event.correlationId, causationId: event.id, actor: event.actor },
        () => this.applyOnce(event),
      );
      if (outcome === "processed") this.options.afterCommit?.();
      message.ack();
      return outcome;
    } catch (error) {
      if (deliveries >= this.maxDeliver) {
        await this.deadLetter(message, error, event.id);
        return "dead-lettered";
      }
      const delayMs = this.backoffMs[Math.min(deliveries - 1, this.backoffMs.length - 1)] ?? 1_000;
      logger.warn({ err: error, consumer: name, eventId: event.id, type: event.type, deliveries, retryInMs: delayMs }, "event handler failed");
      message.nak(delayMs);
      return "retry";
    }
  }

  private applyOnce(event: Event): Promise<"processed" | "duplicate"> {
    const { db, name, handle } = this.options;
    return db.$transaction(
      async (tx) => {
        const inserted = await tx.$executeRawUnsafe(
          `INSERT INTO processed_event (consumer, event_id) VALUES ($1, $2::uuid) ON CONFLICT DO NOTHING`,
          name,
          event.id,
        );
        if (inserted === 0) return "duplicate" as const;
        await handle(event, tx);
        return "processed" as const;
      },
      { timeout: this.options.transactionTimeoutMs ?? 15_000, maxWait: 10_000 },
    );
  }

  private async deadLetter(message: JsMsg, error: unknown, eventId: string | undefined): Promise<void> {
    const { js, logger, name, stream } = this.options;
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    await publishDeadLetter(js, {
      subject: message.subject,
      stream,
      streamSeq: message.seq,
      consumer: name,
      deliveries: message.info.deliveryCount,
      error: text,
      eventId,
      data: message.data,
      headers: message.headers,
    });
    message.ack();
    logger.error({ consumer: name, subject: message.subject, streamSeq: message.seq, eventId, error: text }, "event dead-lettered");
  }

  private async ensureDurable(): Promise<void> {
    const { jsm, stream, name, filterSubject } = this.options;
    const config: Partial<ConsumerConfig> = {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(this.options.ackWaitMs ?? 30_000),
      max_deliver: -1,
      max_ack_pending: 1_000,
      filter_subject: filterSubject,
      ...(this.options.startSequence
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.options.startSequence }
        : { deliver_policy: DeliverPolicy.All }),
    };
    try {
      await jsm.consumers.info(stream, name);
      await jsm.consumers.update(stream, name, {
        ack_wait: config.ack_wait,
        max_ack_pending: config.max_ack_pending,
        filter_subject: filterSubject,
      });
    } catch (error) {
      if (!isNotFound(error)) throw error;
      await jsm.consumers.add(stream, config);
    }
  }
}
