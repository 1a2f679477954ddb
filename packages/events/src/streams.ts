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
  replicas: number;
}

/** Creates the streams, or updates their limits; safe to run from every service at start. */
export async function ensureStreams(jsm: JetStreamManager, limits: StreamLimits = { maxBytes: 1024 ** 3, replicas: 1 }): Promise<void> {
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
    try {
      await jsm.streams.info(name);
      await jsm.streams.update(name, config);
    } catch (error) {
      if (!isNotFound(error)) throw error;
      try {
        await jsm.streams.add(config);
      } catch (addError) {
        // Another service created it between our info and add.
        if (!String(addError).includes("already in use")) throw addError;
      }
    }
  }
}

export function isNotFound(error: unknown): boolean {
  const text = String((error as { message?: string })?.message ?? error);
  return /not found/i.test(text);
}
