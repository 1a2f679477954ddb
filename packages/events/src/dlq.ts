import { headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "@vaultpay/kit";

/** Headers a dead letter carries besides the original message's own. */
export const DLQ_HEADERS = {
  subject: "Vp-Dlq-Subject",
  stream: "Vp-Dlq-Stream",
  streamSeq: "Vp-Dlq-Stream-Seq",
  consumer: "Vp-Dlq-Consumer",
  deliveries: "Vp-Dlq-Deliveries",
  error: "Vp-Dlq-Error",
  eventId: "Vp-Dlq-Event-Id",
} as const;

const MAX_ERROR_CHARS = 1_000;

export interface DeadLetter {
  subject: string;
  stream: string;
  streamSeq: number;
  consumer: string;
  deliveries: number;
  error: string;
  eventId?: string | undefined;
  data: Uint8Array;
  headers?: MsgHdrs | undefined;
}

/**
 * Publishes a message that exhausted its deliveries to `dlq.<stream>.<consumer>`, with the
 * original headers and the last error. The Msg-Id makes a repeat (crash before the original's ack)
 * a no-op inside the duplicate window.
 */
export async function publishDeadLetter(js: JetStreamClient, letter: DeadLetter): Promise<void> {
  const headers = natsHeaders();
  for (const [key, values] of letter.headers ?? []) {
    if (key === "Nats-Msg-Id") continue;
    for (const value of values) headers.append(key, value);
  }
  headers.set(DLQ_HEADERS.subject, letter.subject);
  headers.set(DLQ_HEADERS.stream, letter.stream);
  headers.set(DLQ_HEADERS.streamSeq, String(letter.streamSeq));
  headers.set(DLQ_HEADERS.consumer, letter.consumer);
  headers.set(DLQ_HEADERS.deliveries, String(letter.deliveries));
  // Header values are single-line; the error text is the operator's first clue, so keep it short.
  headers.set(DLQ_HEADERS.error, letter.error.replace(/[\r\n]+/g, " ").slice(0, MAX_ERROR_CHARS));
  if (letter.eventId) headers.set(DLQ_HEADERS.eventId, letter.eventId);
  await js.publish(`dlq.${letter.stream}.${letter.consumer}`, letter.data, {
    headers,
    msgID: `dlq:${letter.stream}:${letter.streamSeq}:${letter.consumer}`,
  });
}

export interface ReplayOptions {
  js: JetStreamClient;
  jsm: JetStreamManager;
  logger: Logger;
  /** Only dead letters of this consumer (durable name). */
  consumer?: string | undefined;
  /** At most this many per run. */
  limit?: number;
}

export interface ReplayResult {
  replayed: number;
  remaining: number;
}

/**
 * Re-publishes dead letters to their original subjects and removes them from DLQ, so each is
 * replayed once. Every consumer of the stream sees the replay; those that already processed the
 * event skip it (idempotent by event id), the one that failed gets a fresh set of deliveries.
 */
export async function replayDeadLetters(options: ReplayOptions): Promise<ReplayResult> {
  const { js, jsm, logger } = options;
  const limit = options.limit ?? 1_000;
  const info = await jsm.streams.info("DLQ");
  let replayed = 0;
  let remaining = 0;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const message = await jsm.streams.getMessage("DLQ", { seq }).catch(() => null);
    if (!message) continue; // deleted earlier
    const consumer = message.header.get(DLQ_HEADERS.consumer);
    if (options.consumer && consumer !== options.consumer) continue;
    if (replayed >= limit) {
      remaining++;
      continue;
    }
    const subject = message.header.get(DLQ_HEADERS.subject);
    const headers = natsHeaders();
    for (const [key, values] of message.header) {
      if (key.startsWith("Vp-Dlq-") || key === "Nats-Msg-Id") continue;
      for (const value of values) headers.append(key, value);
    }
    // A fresh Msg-Id: the original id is still inside the duplicate window after a quick fix.
    await js.publish(subject, message.data, { headers, msgID: `replay:dlq:${seq}` });
    await jsm.streams.deleteMessage("DLQ", seq, false);
    replayed++;
    logger.info({ dlqSeq: seq, subject, consumer }, "replayed dead letter");
  }
  return { replayed, remaining };
}
