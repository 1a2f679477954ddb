import {
  AckPolicy,
  DeliverPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { errorSummary, isInfrastructureUnavailable, runWithContext } from "@vaultpay/kit";
import type { Logger, Metrics } from "@vaultpay/kit";
import { SpanKind, TRACEPARENT, endSpan, runInSpan, startSpan, tracingEnabled, type Span } from "@vaultpay/telemetry";
import { parseEvent, type Event } from "./envelope.ts";
import type { EventType } from "./catalog.ts";
import { publishDeadLetter } from "./dlq.ts";
import { withBufferedOutbox } from "./outbox.ts";
import { isNotFound, type StreamName } from "./streams.ts";
import { LOCK_KEYS_SQL, lockKeys, lockKeysParameter, type SqlDatabase, type SqlExecutor } from "./sql.ts";

/**
 * How long one pull request stays open on the server. The client's recovery runs on this clock:
 * the server's idle heartbeats come every half of it and two missed ones re-pull, and after a
 * reconnect a failed check of the consumer (a cluster still electing the stream's leader) is
 * retried after this long. With the client's default of 30 s, killing one node of a NATS cluster
 * stalled consumers for 30 s, a whole saga step's budget in the fault tests, and one run in four
 * refunded most transfers as timed out (test/cluster.test.ts). An idle consumer re-pulls this
 * often: one small request per consumer every 5 s.
 */
const PULL_EXPIRES_MS = 5_000;

/** Longest wait before an event whose dependency was away is tried again. */
const INFRASTRUCTURE_RETRY_MAX_MS = 2_000;

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
  /**
   * The event types the handler acts on, when the filter subject matches more (one filter subject
   * on NATS 2.9). Others are acknowledged on arrival from their Vp-Event-Type header, unparsed and
   * unrecorded: no transaction for an event the handler would ignore. Default: every type.
   */
  accepts?: readonly EventType[];
  /**
   * Of the accepted events, those the handler acts on, decided on the parsed event (a fraud verdict
   * that passed, say). The others are acknowledged unrecorded, without a transaction: the handler
   * would do nothing with them, so a redelivery is as harmless as this skip. Default: all.
   */
  acts?: (event: Event) => boolean;
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
  /**
   * For a new durable: start with the messages stored since this time (a consumer added to a
   * running system that has no use for older events). An existing durable keeps its position.
   */
  startTime?: Date;
  /**
   * Called after a commit that handled new events, with how many and the events they appended to
   * the outbox (e.g. for the outbox relay to publish them at once, OutboxRelay.publishCommitted).
   */
  afterCommit?: (commit: BatchCommit) => void;
  /** Database transaction timeout for one handler run. */
  transactionTimeoutMs?: number;
  /**
   * Up to this many messages are handled in one transaction (one commit for all of them). Messages
   * only batch up while a transaction is running, so a quiet stream still handles each at once.
   * Default 1: one message per transaction. When a batch fails, its messages are handled one by
   * one, each with its own retries and dead letter, exactly as without batching.
   */
  maxBatchMessages?: number;
  /**
   * The effect for a batch of new events (duplicates already removed), in delivery order. Default:
   * `handle` for each, in the event's context. A batch handler runs outside any event's context;
   * `within(event, work)` runs the part of its work that belongs to one event in that event's
   * context and span (what it emits then names the event as its cause, in the same trace).
   */
  handleBatch?: (events: Event[], tx: Tx, within: EventScope) => Promise<void>;
  /**
   * The batch handler itself skips events it already applied, atomically with applying them (the
   * audit log: an event id is stored once, checked under the chain's lock), so this consumer
   * writes no processed_event rows: one statement less per transaction. Only with handleBatch.
   */
  deduplicatesItself?: boolean;
  /** Begin each transaction with preferIndexScans's settings (a handler that calls it saves its round trip). */
  preferIndexScans?: boolean;
  /**
   * Group commit: before a batch that is not full, wait this long for more messages to join it
   * (default 0). Fewer, larger transactions for a consumer whose latency matters less than its
   * cost per event (the audit log); every event waits up to this much longer.
   */
  batchLingerMs?: number;
  /**
   * Linger only while fewer than this many messages wait (default: maxBatchMessages, a full
   * batch): a batch starts at once when this many are there, and a linger ends when this many
   * have arrived. Under a backlog, the messages that arrived during the last transaction already
   * make a batch worth its commit, and waiting would only add to the lag.
   */
  batchLingerBelow?: number;
  /** Counts redeliveries and dead letters per durable (kit's metrics). */
  metrics?: Pick<Metrics, "consumerRedeliveries" | "consumerDeadLetters">;
}

/**
 * Settings of the consumers on the transfer saga's path: events that arrive while a transaction
 * runs, or within 3 ms of the first, are applied together (one commit, one fsync, for up to 128).
 * The 3 ms per hop bought more than it cost in bench/saga-results.md: 69 → 80 completed/s, and
 * lower latency at a fixed rate (less CPU to queue behind). Up to 32 per transaction, transactions'
 * durable of the saga's answers (two per transfer, beside the gateway's requests in the same
 * process) fell behind a closed loop of 64 clients: time to COMPLETED p50 4–11 s; at 128 it keeps
 * up, 0.8–1.0 s, at the same completed/s and CPU per transfer (five A/B pairs, 2026-12-07); at 128
 * clients the 32's backlog outgrew the step deadlines (p50 38 s against 2.3 s). A failing batch is
 * retried message by message.
 */
export const BATCHED_CONSUMER = { maxBatchMessages: 128, batchSize: 256, batchLingerMs: 3 } as const;

/** Runs `work` as part of handling `event`: in its correlation context and, while tracing, its span. */
export type EventScope = <T>(event: Event, work: () => T) => T;

/** An EventScope without tracing: the event's correlation context only (tests, and handlers called directly). */
export const inEventContext: EventScope = (event, work) =>
  runWithContext({ correlationId: event.correlationId, causationId: event.id, actor: event.actor }, work);

export type ProcessOutcome = "processed" | "duplicate" | "passed-by" | "retry" | "dead-lettered";

/** What one consumer transaction did: new events handled and the outbox rows they appended (in the outbox's order). */
export interface BatchCommit {
  handled: number;
  events: readonly Event[];
}

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

  private readonly options: EventConsumerOptions<Tx>;

  constructor(options: EventConsumerOptions<Tx>) {
    this.options = options;

    this.maxDeliver = options.maxDeliver ?? 5;
    this.backoffMs = options.backoffMs ?? [500, 2_000, 5_000, 15_000];
  }

  async start(): Promise<void> {
    // The first subscription fails loudly at start-up; later ones are retried by supervise().
    await this.subscribe();
    this.loop = this.supervise();
  }

  private async subscribe(): Promise<void> {
    const { js, stream, name } = this.options;
    await this.ensureDurable();
    const consumer = await js.consumers.get(stream, name);
    this.messages = await consumer.consume({ max_messages: this.options.batchSize ?? 8, expires: PULL_EXPIRES_MS });
  }

  /**
   * Consumes until stopped. If the message iterator ends or fails (NATS restarted, the consumer
   * was removed, a batch failed), it subscribes again with back-off: a consumer must never stop
   * for good while its service runs. Unacked messages are redelivered after ack_wait meanwhile.
   */
  private async supervise(): Promise<void> {
    const { logger, name } = this.options;
    const maxBatch = this.options.maxBatchMessages ?? 1;
    let backoffMs = 250;
    for (;;) {
      try {
        await this.consume(maxBatch);
      } catch (error) {
        if (!this.stopped) logger.warn({ err: error, consumer: name }, "consumer interrupted");
      }
      if (this.stopped) return;
      await new Promise((resolve) => setTimeout(resolve, backoffMs));
      if (this.stopped) return;
      try {
        await this.subscribe();
        backoffMs = 250;
        logger.info({ consumer: name }, "consumer resubscribed");
      } catch (error) {
        backoffMs = Math.min(backoffMs * 2, 5_000);
        logger.warn({ err: error, consumer: name, retryInMs: backoffMs }, "consumer could not resubscribe");
      }
    }
  }

  /**
   * Messages that arrive while a batch transaction runs wait in `pending` and form the next batch;
   * at most maxBatch wait (back-pressure on the iterator). `running` is set and cleared in the same
   * tick as `pending` is checked, so no message is left waiting without a flush to take it. One
   * path for every consumer: with maxBatch 1 each message is its own batch, handled in turn.
   */
  private async consume(maxBatch: number): Promise<void> {
    const pending: JsMsg[] = [];
    let running = false;
    let flushed: Promise<void> = Promise.resolve();
    let failure: unknown;
    const lingerMs = maxBatch > 1 ? (this.options.batchLingerMs ?? 0) : 0;
    const lingerBelow = Math.min(maxBatch, this.options.batchLingerBelow ?? maxBatch);
    /** Ends the current linger (set while one runs): enough messages arrived to be worth a batch. */
    let endLinger: (() => void) | undefined;
    const flush = () => {
      if (running) return;
      running = true;
      flushed = (async () => {
        try {
          while (pending.length > 0 && failure === undefined) {
            if (lingerMs > 0 && pending.length < lingerBelow) {
              await new Promise<void>((resolve) => {
                const timer = setTimeout(() => endLinger?.(), lingerMs);
                endLinger = () => {
                  clearTimeout(timer);
                  endLinger = undefined;
                  resolve();
                };
              });
            }
            await this.processBatch(pending.splice(0, maxBatch));
          }
        } catch (error) {
          failure = error;
          await this.messages?.close().catch(() => undefined);
        } finally {
          running = false;
        }
      })();
    };
    // Messages of types the handler ignores are acknowledged together once the messages at hand
    // are iterated: each ack is a write to NATS, and the client flushes its buffer once per
    // microtask turn, which every step of this loop is. One write for them instead of one each
    // (a filter subject that matches more types than the handler takes).
    const ignored: JsMsg[] = [];
    const ackIgnored = () => {
      for (const message of ignored.splice(0)) message.ack();
    };
    for await (const message of this.messages!) {
      if (!this.wanted(message)) {
        if (ignored.push(message) === 1) setImmediate(ackIgnored);
        continue;
      }
      pending.push(message);
      flush();
      if (pending.length >= lingerBelow) endLinger?.();
      if (pending.length >= maxBatch) await flushed;
      if (this.stopped || failure !== undefined) break;
    }
    ackIgnored();
    // Stopping (or the iterator ended): what waits is applied now, without the rest of a linger.
    endLinger?.();
    await flushed;
    if (failure !== undefined) throw failure;
  }

  /** False only for a message whose type header names a type outside `accepts`. */
  private wanted(message: JsMsg): boolean {
    const { accepts } = this.options;
    const type = accepts && message.headers?.get("Vp-Event-Type");
    return !type || accepts!.includes(type as EventType);
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
    if (deliveries > 1) this.options.metrics?.consumerRedeliveries.inc({ consumer: name });
    let event: Event;
    try {
      event = parseEvent(message.json());
    } catch (error) {
      // A malformed or unknown event will never succeed: no retries, straight to DLQ.
      await this.deadLetter(message, error, undefined);
      return "dead-lettered";
    }
    if (this.options.acts?.(event) === false) {
      message.ack();
      return "passed-by";
    }
    // A slow effect (waiting on a lock) must not be redelivered while it runs: tell the server
    // the message is being worked on, well inside ack_wait.
    const heartbeat = setInterval(() => message.working(), Math.max(1_000, (this.options.ackWaitMs ?? 30_000) / 3));
    const span = this.startEventSpan(message, event);
    try {
      const commit = await runWithContext({ correlationId: event.correlationId, causationId: event.id, actor: event.actor }, () =>
        this.applyBatchOnce([event], new Map([[event, span]])),
      );
      if (commit.handled > 0) this.options.afterCommit?.(commit);
      message.ack();
      span?.setAttribute("vaultpay.duplicate", commit.handled === 0);
      endSpan(span);
      return commit.handled > 0 ? "processed" : "duplicate";
    } catch (error) {
      endSpan(span, error);
      const delayMs = this.backoffMs[Math.min(deliveries - 1, this.backoffMs.length - 1)] ?? 1_000;
      if (isInfrastructureUnavailable(error)) {
        // The database (or another dependency) is away, not the event wrong: retrying it is the
        // only right answer, however long the outage lasts. A dead letter here would take the
        // event out of its stream's order until someone replays it (an audit record missing).
        const waitMs = Math.min(delayMs, INFRASTRUCTURE_RETRY_MAX_MS);
        logger.warn(
          { consumer: name, eventId: event.id, type: event.type, deliveries, retryInMs: waitMs, reason: errorSummary(error) },
          "dependency unavailable; will retry",
        );
        message.nak(waitMs);
        return "retry";
      }
      if (deliveries >= this.maxDeliver) {
        await this.deadLetter(message, error, event.id);
        return "dead-lettered";
      }
      logger.warn(
        { err: error, consumer: name, eventId: event.id, type: event.type, deliveries, retryInMs: delayMs },
        "event handler failed",
      );
      message.nak(delayMs);
      return "retry";
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** One transaction for the batch's valid events; on any failure, each message on its own. */
  private async processBatch(messages: JsMsg[]): Promise<void> {
    if (messages.length === 1) {
      await this.process(messages[0]!);
      return;
    }
    const valid: Array<{ message: JsMsg; event: Event }> = [];
    for (const message of messages) {
      let event: Event | undefined;
      try {
        event = parseEvent(message.json());
      } catch {
        // process() sends it to DLQ with the parse error, as it would without batching.
        await this.process(message);
      }
      if (!event) continue;
      if (this.options.acts?.(event) === false) message.ack();
      else valid.push({ message, event });
    }
    if (valid.length === 0) return;
    const spans = new Map(valid.map(({ message, event }) => [event, this.startEventSpan(message, event)]));
    let commit: BatchCommit;
    try {
      commit = await this.applyBatchOnce(
        valid.map(({ event }) => event),
        spans,
      );
    } catch (error) {
      for (const span of spans.values()) endSpan(span, error);
      this.options.logger.warn(
        { err: error, consumer: this.options.name, messages: valid.length },
        "batch failed; handling its messages one by one",
      );
      for (const { message } of valid) await this.process(message);
      return;
    }
    if (commit.handled > 0) this.options.afterCommit?.(commit);
    for (const { message } of valid) message.ack();
    for (const span of spans.values()) endSpan(span);
  }

  /**
   * While tracing: the span an event is handled in, a child of the relay's publish (the message's
   * traceparent header) or else of the span that emitted it (the envelope's), so a transfer's hops
   * form one trace. Ended after the commit and ack, or failed with the error. While tracing is off
   * nothing is read: the message's headers and its reply subject (the delivery count) are parsed
   * on first use, and building the span's attributes for nothing was 7.5 % of audit's CPU
   * (bench/saga-results.md, 2026-12-07).
   */
  private startEventSpan(message: JsMsg, event: Event): Span | undefined {
    if (!tracingEnabled()) return undefined;
    return startSpan(`${this.options.name} ${event.type}`, {
      kind: SpanKind.CONSUMER,
      parent: message.headers?.get(TRACEPARENT) || event.traceparent || null,
      attributes: {
        "messaging.system": "nats",
        "messaging.consumer.group.name": this.options.name,
        "messaging.message.id": event.id,
        "vaultpay.correlation_id": event.correlationId,
        "messaging.message.delivery_count": message.info.deliveryCount,
      },
    });
  }

  /**
   * Records the batch's ids and runs the effect for those not seen before, in one transaction. Each
   * event's effect runs in its span (events it emits carry that span's context); a batch handler
   * runs outside them.
   */
  private applyBatchOnce(events: Event[], spans: ReadonlyMap<Event, Span | undefined>): Promise<BatchCommit> {
    const { db, name, handle } = this.options;
    const within: EventScope = (event, work) => runInSpan(spans.get(event), () => inEventContext(event, work));
    const handleBatch =
      this.options.handleBatch ??
      (async (fresh: Event[], tx: Tx) => {
        for (const event of fresh) await within(event, () => handle(event, tx));
      });
    return db.$transaction(
      async (tx) => {
        const unseen =
          this.options.deduplicatesItself && this.options.handleBatch
            ? new Set(events.map((event) => event.id.toLowerCase()))
            : await recordProcessed(tx, name, events);
        // First delivery of each id only: a batch can hold the same event twice.
        const fresh = events.filter((event) => unseen.delete(event.id.toLowerCase()));
        if (fresh.length === 0) return { handled: 0, events: [] };
        const { events: emitted } = await withBufferedOutbox(tx, () => handleBatch(fresh, tx, within));
        return { handled: fresh.length, events: emitted };
      },
      { timeout: this.options.transactionTimeoutMs ?? 15_000, maxWait: 10_000, preferIndexScans: this.options.preferIndexScans },
    );
  }

  private async deadLetter(message: JsMsg, error: unknown, eventId: string | undefined): Promise<void> {
    const { js, logger, name, stream } = this.options;
    const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    this.options.metrics?.consumerDeadLetters.inc({ consumer: name });
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
        : this.options.startTime
          ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: this.options.startTime.toISOString() }
          : { deliver_policy: DeliverPolicy.All }),
    };
    if ((await durableInfo(jsm, stream, name)) === undefined) {
      try {
        await jsm.consumers.add(stream, config);
        return;
      } catch (addError) {
        // Another replica added it since (replicas started together): its start position stands,
        // a moment off this one's, and JetStream refuses an add that names another.
        if ((await durableInfo(jsm, stream, name).catch(() => undefined)) === undefined) throw addError;
      }
    }
    await jsm.consumers.update(stream, name, {
      ack_wait: config.ack_wait,
      max_ack_pending: config.max_ack_pending,
      filter_subject: filterSubject,
    });
  }
}

/** A durable's info (its position, its config); undefined when the stream has no such durable. */
export async function durableInfo(jsm: JetStreamManager, stream: StreamName, name: string): Promise<ConsumerInfo | undefined> {
  try {
    return await jsm.consumers.info(stream, name);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** Records the events as handled by this consumer; the ids not recorded before (lower case). */
async function recordProcessed(tx: SqlExecutor, consumer: string, events: readonly Event[]): Promise<Set<string>> {
  const inserted = await tx.$queryRawUnsafe<Array<{ event_id: string }>>(
    insertProcessedSql(1, 2),
    consumer,
    events.map((event) => event.id),
  );
  return new Set(inserted.map((row) => row.event_id));
}

/** Records event ids ($ids) as processed by a consumer ($consumer); returns the ids that were new (lower case). */
function insertProcessedSql(consumer: number, ids: number, where = ""): string {
  return `INSERT INTO processed_event (consumer, event_id) SELECT $${consumer}, id FROM unnest($${ids}::uuid[]) AS id ${where}
    ON CONFLICT DO NOTHING RETURNING event_id::text`;
}

/** A batch's events to record as processed by a consumer (one with `deduplicatesItself`). */
export interface ProcessedRecording {
  consumer: string;
  events: readonly Event[];
}

/**
 * lockKeys's locks on `keys`; with `recording` (a handler of a consumer with `deduplicatesItself`),
 * the events are recorded as processed by that consumer in the same statement, the insert waiting
 * for the locks, and the ids that were new are returned in lower case (undefined without it). The
 * handler applies only those: a repeated event was applied by the transaction that recorded it.
 * Locks first, as the handler would take them: two batches holding the same redelivered event wait
 * for each other in one order.
 */
export async function lockKeysRecordingProcessed(
  tx: SqlExecutor,
  keys: readonly string[],
  recording: ProcessedRecording | undefined,
): Promise<Set<string> | undefined> {
  if (recording === undefined) {
    await lockKeys(tx, keys);
    return undefined;
  }
  const inserted = await tx.$queryRawUnsafe<Array<{ event_id: string }>>(
    `WITH locked AS MATERIALIZED (${LOCK_KEYS_SQL}), recorded AS (${insertProcessedSql(2, 3, "WHERE (SELECT n FROM locked) >= 0")})
     SELECT event_id FROM recorded`,
    lockKeysParameter(keys),
    recording.consumer,
    recording.events.map((event) => event.id),
  );
  return new Set(inserted.map((row) => row.event_id));
}
