import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";

/** Streams by subject prefix (shared/ARCHITECTURE.md §3); an event's subject is its type. */
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

export function streamForSubject(subject: string): StreamName {
  const prefix = subject.split(".")[0];
  for (const [name, subjects] of Object.entries(STREAMS)) {
    if (subjects.some((pattern) => pattern.split(".")[0] === prefix)) return name as StreamName;
  }
  throw new Error(`no stream holds subject ${subject}`);
}

export interface StreamLimits {
  /** Per stream; past it new publishes are refused (and retried from the outbox). History is kept (audit replays it). */
  maxBytes: number;
  /**
   * Servers holding a copy (NATS_STREAM_REPLICAS). With 1, a publish is acked once the one server
   * wrote it to its file (not fsynced: see README "Durability"); with 3, once a majority (2 of 3)
   * of the cluster has it, so losing one machine loses no acked event.
   */
  replicas: number;
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = { maxBytes: 1024 ** 3, replicas: 1 };

/** Creates the streams, or updates their limits; safe to run from every service at start. */
export async function ensureStreams(jsm: JetStreamManager, limits: StreamLimits = DEFAULT_STREAM_LIMITS): Promise<void> {
  for (const [name, subjects] of Object.entries(STREAMS)) {
    const config: Partial<StreamConfig> & { name: string } = {
      name,
      subjects: [...subjects],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      // Full means publishes fail (the outbox keeps the rows and retries, loudly), never that the
      // oldest events or dead letters silently disappear.
      discard: DiscardPolicy.New,
      max_bytes: limits.maxBytes,
      max_msg_size: MAX_MESSAGE_BYTES,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
      num_replicas: limits.replicas,
    };
    await whileClusterSettles(async () => {
      try {
        const existing = await jsm.streams.info(name);
        // Never fewer copies than the stream has: one process started without the cluster's
        // setting (the default 1) must not scale every stream down. Scaling down is an operator's
        // act (`nats stream edit --replicas`).
        await jsm.streams.update(name, { ...config, num_replicas: Math.max(existing.config.num_replicas, limits.replicas) });
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
