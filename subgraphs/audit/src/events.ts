import {
  STREAMS,
  appendToOutbox,
  createEvent,
  unbatch,
  type Event,
  type EventData,
  type SqlExecutor,
  type StreamName,
} from "@vaultpay/events";
import { canonicalJson, type AuditEntry } from "./chain.ts";
import type { Runtime } from "./runtime.ts";
import { appendEntries } from "./store.ts";

/** Every stream is audited except DLQ, whose letters are copies of events already audited (or malformed). */
export const AUDITED_STREAMS = (Object.keys(STREAMS) as StreamName[]).filter((stream) => stream !== "DLQ");

/** One durable consumer per stream (nats-server 2.9 allows one filter per consumer). */
export function auditConsumerName(stream: StreamName): string {
  return `audit-${stream.toLowerCase()}`;
}

/**
 * What the log keeps of an event. Events are secret-free by contract (packages/events catalog);
 * the actor's device and IP stay out, the user id is the actor. Normalized so the same event always
 * yields the same entry: lower-case uuid (as PostgreSQL returns it), UTC milliseconds, canonical data.
 */
export function entryOf(event: Event): AuditEntry {
  return {
    eventId: event.id.toLowerCase(),
    type: event.type,
    occurredAt: new Date(event.occurredAt).toISOString(),
    correlationId: event.correlationId,
    causationId: event.causationId,
    actorUserId: event.actor.userId ?? null,
    data: canonicalJson(event.data),
  };
}

/** The entries of a message: one per event it stands for (the requests of a gateway.request.batch, each its own record). */
export function entriesOf(events: readonly Event[]): AuditEntry[] {
  return events.flatMap(unbatch).map(entryOf);
}

export async function appendEvent(event: Event, tx: SqlExecutor): Promise<void> {
  await appendEntries(tx, entriesOf([event]));
}

/** Events appended per transaction when a stream has a backlog (bench/audit-results.md). */
export const AUDIT_BATCH_MAX_MESSAGES = 200;
/**
 * How long a batch not yet full waits for more events before its append (group commit). 100 ms,
 * not 20: at ~100 transfers/s each stream's batches were a few events each, and audit (with its
 * PostgreSQL backend) took ~14 % of the machine's CPU in the saga benchmark's open loop; at 100 ms,
 * ~10 % (bench/saga-results.md, tenth session). A record reaches the chain at most ~0.1 s later,
 * against the 5 s the audit lag is held to.
 */
export const AUDIT_BATCH_LINGER_MS = 100;
/**
 * ...but only while fewer than this many events wait: with the machine saturated (64 clients) a
 * 100 ms linger before every batch left audit 0.6–2.2 s behind at the end of the run, against
 * 0.1 s at 20 ms; the events that arrive during one append already make a large batch then.
 */
export const AUDIT_BATCH_LINGER_BELOW = 50;

/**
 * Starts the five audit consumers. A redelivery is a no-op: the append skips event ids already in
 * the log, under the chain head's lock (the log is its own record of what was handled, so no
 * processed_event row is written), and the durable keeps its place across restarts. Messages
 * waiting while an append runs are appended together in the next transaction. The chain order is
 * the order these appends commit.
 */
export async function startAuditConsumers(runtime: Pick<Runtime, "eventing">, maxBatchMessages = AUDIT_BATCH_MAX_MESSAGES): Promise<void> {
  for (const stream of AUDITED_STREAMS) {
    await runtime.eventing.consume({
      name: auditConsumerName(stream),
      stream,
      filterSubject: STREAMS[stream][0],
      handle: appendEvent,
      handleBatch: (events, tx) => appendEntries(tx, entriesOf(events)).then(() => undefined),
      // appendEntries skips ids already in the log, under the chain head's lock.
      deduplicatesItself: true,
      // A record may reach the chain 0.1 s later, in batches several times larger (bench/saga-results.md).
      batchLingerMs: AUDIT_BATCH_LINGER_MS,
      batchLingerBelow: AUDIT_BATCH_LINGER_BELOW,
      maxBatchMessages,
      batchSize: maxBatchMessages + 56,
    });
  }
}

/**
 * Audit's only emitted event: an operator's dead-letter replay, written to audit's own outbox and
 * committed before the replay starts. The relay is woken at once, so the record reaches the
 * chain (through the OPERATOR stream and audit's own consumer) within moments.
 */
export async function recordReplayRequest(
  runtime: Pick<Runtime, "db" | "eventing">,
  data: EventData<"operator.dlq.replay.requested">,
): Promise<string> {
  const event = createEvent("operator.dlq.replay.requested", data);
  await runtime.db.$transaction((tx) => appendToOutbox(tx, event));
  runtime.eventing.relay.publishCommitted([event]);
  return event.id;
}
