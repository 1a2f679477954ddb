import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { DEFAULT_STREAM_MAX_AGE_HOURS, DEFAULT_STREAM_MAX_BYTES } from "@vaultpay/kit";
import type { Event } from "./envelope.ts";

/**
 * Streams by subject prefix (shared/ARCHITECTURE.md §3); an event's subject is its type, and for a
 * transfer's status change the transfer id after it (eventSubject).
 */
export const STREAMS = {
  AUTH: ["auth.>"],
  ACCOUNTS: ["account.>"],
  TRANSACTIONS: ["transaction.>"],
  FRAUD: ["fraud.>"],
  GATEWAY: ["gateway.>"],
  /** What operators did to the platform (a dead-letter replay): audited like every event. */
  OPERATOR: ["operator.>"],
  DLQ: ["dlq.>"],
} as const;

export type StreamName = keyof typeof STREAMS;

/** How long JetStream remembers a Nats-Msg-Id; a republish within it is dropped as a duplicate. */
export const DUPLICATE_WINDOW_MS = 2 * 60_000;
const MAX_MESSAGE_BYTES = 1024 * 1024;

/** The subject of one transfer's status changes (a durable wanting them all filters on `transaction.status.changed.*`). */
export function statusChangedSubject(transferId: string): string {
  return `transaction.status.changed.${transferId}`;
}

/**
 * The subject an event is published on: its type; a transfer's status change adds the transfer id,
 * so NATS hands a gateway only the changes of transfers its subscriptions follow, instead of every
 * gateway replica receiving and reading all of them (three per transfer). Durables filtering on
 * the stream's prefix (audit's `transaction.>`) still take them all; the saga's consumers select by
 * the Vp-Event-Type header. Rows written before this rule keep the bare type as their subject.
 */
export function eventSubject(event: Pick<Event, "type" | "data">): string {
  return event.type === "transaction.status.changed" ? statusChangedSubject((event.data as { transferId: string }).transferId) : event.type;
}

export function streamForSubject(subject: string): StreamName {
  const prefix = subject.split(".")[0];
  for (const [name, subjects] of Object.entries(STREAMS)) {
    if (subjects.some((pattern) => pattern.split(".")[0] === prefix)) return name as StreamName;
  }
  throw new Error(`no stream holds subject ${subject}`);
}

export interface StreamLimits {
  /**
   * Per stream (NATS_STREAM_MAX_BYTES); past it new publishes are refused (and retried from the
   * outboxes), never are unconsumed events dropped. A saga transfer stores ~7 KB over the streams,
   * ~3.7 KB of it in TRANSACTIONS (bench/saga-results.md): size it for the traffic of maxAgeMs.
   */
  maxBytes: number;
  /**
   * How long the event streams keep a message (NATS_STREAM_MAX_AGE_HOURS); 0 keeps every message
   * until maxBytes is reached. Without an age the streams only grow: at the default 1 GiB,
   * TRANSACTIONS refused publishes after ~290,000 transfers and the saga stopped. The DLQ keeps its
   * messages until they are replayed, whatever the age. The audit log, the outboxes and the
   * databases' backups are the history; the streams are the delivery and the replay window.
   */
  maxAgeMs: number;
  /**
   * Servers holding a copy (NATS_STREAM_REPLICAS). With 1, a publish is acked once the one server
   * wrote it to its file (not fsynced: see README "Durability"); with 3, once a majority (2 of 3)
   * of the cluster has it, so losing one machine loses no acked event.
   */
  replicas: number;
}

/** The limits of the settings' defaults (kit's baseConfigSchema). */
export const DEFAULT_STREAM_LIMITS: StreamLimits = {
  maxBytes: DEFAULT_STREAM_MAX_BYTES,
  maxAgeMs: DEFAULT_STREAM_MAX_AGE_HOURS * 3_600_000,
  replicas: 1,
};

/** The stream limits a process's settings ask for (kit's baseConfigSchema reads them). */
export function streamLimitsOf(config: {
  NATS_STREAM_REPLICAS: number;
  NATS_STREAM_MAX_BYTES: number;
  NATS_STREAM_MAX_AGE_HOURS: number;
}): StreamLimits {
  return {
    replicas: config.NATS_STREAM_REPLICAS,
    maxBytes: config.NATS_STREAM_MAX_BYTES,
    maxAgeMs: config.NATS_STREAM_MAX_AGE_HOURS * 3_600_000,
  };
}

/** Streams whose messages wait for a person (a dead letter until its replay): no age limit. */
const KEPT_WHATEVER_THE_AGE: ReadonlySet<StreamName> = new Set(["DLQ"]);

/** JetStream refuses a duplicate window longer than the age (only a test sets an age that short). */
const duplicateWindowWithin = (maxAgeNs: number) =>
  maxAgeNs > 0 ? Math.min(nanos(DUPLICATE_WINDOW_MS), maxAgeNs) : nanos(DUPLICATE_WINDOW_MS);

/** A limit where 0 or less means none, as JetStream writes it: larger is looser. */
const looser = (existing: number, wanted: number) => (existing <= 0 || wanted <= 0 ? 0 : Math.max(existing, wanted));

/**
 * Creates the streams, or updates their limits; safe to run from every service at start. An
 * update never tightens a limit the stream already has (fewer copies, fewer bytes, a shorter age):
 * one process started without the platform's settings must not scale a stream down or make it
 * drop history it still holds. Tightening is an operator's act (`nats stream edit`).
 */
export async function ensureStreams(jsm: JetStreamManager, limits: StreamLimits = DEFAULT_STREAM_LIMITS): Promise<void> {
  for (const [name, subjects] of Object.entries(STREAMS) as Array<[StreamName, readonly string[]]>) {
    const maxAgeMs = KEPT_WHATEVER_THE_AGE.has(name) ? 0 : limits.maxAgeMs;
    const config: Partial<StreamConfig> & { name: string } = {
      name,
      subjects: [...subjects],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      // Full means publishes fail (the outbox keeps the rows and retries, loudly), never that the
      // oldest events or dead letters silently disappear.
      discard: DiscardPolicy.New,
      max_bytes: limits.maxBytes,
      max_age: nanos(maxAgeMs),
      max_msg_size: MAX_MESSAGE_BYTES,
      duplicate_window: duplicateWindowWithin(nanos(maxAgeMs)),
      num_replicas: limits.replicas,
    };
    await whileClusterSettles(async () => {
      try {
        const existing = (await jsm.streams.info(name)).config;
        const maxAge = looser(existing.max_age, config.max_age!);
        await jsm.streams.update(name, {
          ...config,
          // Never fewer copies than the stream has: scaling down is an operator's act
          // (`nats stream edit --replicas`).
          num_replicas: Math.max(existing.num_replicas, limits.replicas),
          max_bytes: looser(existing.max_bytes, limits.maxBytes) || -1,
          max_age: maxAge,
          duplicate_window: duplicateWindowWithin(maxAge),
        });
      } catch (error) {
        if (!isNotFound(error)) throw error;
        try {
          await jsm.streams.add(config);
        } catch (addError) {
          // Another service created it between our info and add.
          if (!String(addError).includes("already in use")) throw addError;
        }
      }
      // A server outside a cluster refuses to create a stream with several copies, but takes
      // the same update of an existing one without keeping any more: an operator who asked for
      // three must learn it now, not when a disk dies.
      if (limits.replicas > 1 && !(await jsm.streams.info(name)).cluster?.name) {
        throw new Error(`stream ${name}: NATS_STREAM_REPLICAS=${limits.replicas} needs a NATS cluster, and this server is not part of one`);
      }
    });
  }
}

/** Bounds the wait for a cluster that is electing its JetStream leader (start-up, a node lost). */
const CLUSTER_SETTLE_TIMEOUT_MS = 30_000;

/**
 * Runs `step` again while the cluster answers that JetStream is not ready yet (no meta leader:
 * right after the nodes start, or while one is being replaced). Anything else, such as asking for
 * more replicas than there are servers, fails at once.
 */
async function whileClusterSettles(step: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + CLUSTER_SETTLE_TIMEOUT_MS;
  for (let waitMs = 100; ; waitMs = Math.min(waitMs * 2, 2_000)) {
    try {
      return await step();
    } catch (error) {
      const text = String((error as { message?: string })?.message ?? error);
      if (!/temporarily unavailable|timeout|no responders/i.test(text) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

export function isNotFound(error: unknown): boolean {
  const text = String((error as { message?: string })?.message ?? error);
  return /not found/i.test(text);
}
