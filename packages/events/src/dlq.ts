import { headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import type { JetStreamClient, JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import type { Logger } from "@vaultpay/kit";
import { STREAMS, isNotFound, type StreamName } from "./streams.ts";

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

/** A dead letter as an operator reads it: where it came from, why it died, never its payload. */
export interface DeadLetterSummary {
  /** Its sequence in the DLQ stream: the handle to replay it by. */
  dlqSeq: number;
  consumer: string;
  stream: string;
  subject: string;
  /** Its sequence in the original stream. */
  streamSeq: number | null;
  eventId: string | null;
  eventType: string | null;
  correlationId: string | null;
  deliveries: number;
  error: string;
  deadLetteredAt: Date;
}

/** What a durable name may look like (NATS refuses dots and wildcards in it). */
export const CONSUMER_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** The DLQ subjects of one consumer (`dlq.<stream>.<consumer>`), or of all. */
function dlqFilter(consumer: string | undefined): string {
  if (consumer !== undefined && !CONSUMER_NAME_PATTERN.test(consumer)) throw new Error(`not a consumer name: ${consumer}`);
  return consumer ? `dlq.*.${consumer}` : "dlq.>";
}

/** Most dead letters read by one list or replay call. */
export const DEAD_LETTER_READ_MAX = 1_000;

function summarize(message: StoredMsg): DeadLetterSummary {
  const header = (name: string) => message.header.get(name) || null;
  const streamSeq = Number(header(DLQ_HEADERS.streamSeq));
  return {
    dlqSeq: message.seq,
    consumer: header(DLQ_HEADERS.consumer) ?? message.subject.split(".")[2] ?? "",
    stream: header(DLQ_HEADERS.stream) ?? message.subject.split(".")[1] ?? "",
    subject: header(DLQ_HEADERS.subject) ?? "",
    streamSeq: Number.isInteger(streamSeq) && streamSeq > 0 ? streamSeq : null,
    eventId: header(DLQ_HEADERS.eventId),
    eventType: header("Vp-Event-Type"),
    correlationId: header("Vp-Correlation-Id"),
    deliveries: Number(header(DLQ_HEADERS.deliveries) ?? 0),
    error: header(DLQ_HEADERS.error) ?? "",
    deadLetteredAt: message.time,
  };
}

/**
 * Dead letters in DLQ order, of one consumer or all, at most `limit`. Each read asks JetStream for
 * the next message of the consumer's subjects at or after a sequence, so replayed (deleted) letters
 * and other consumers' letters cost nothing to skip.
 */
async function* readDeadLetters(jsm: JetStreamManager, consumer: string | undefined, limit: number): AsyncGenerator<StoredMsg> {
  const filter = dlqFilter(consumer);
  let seq = 1;
  for (let read = 0; read < Math.min(limit, DEAD_LETTER_READ_MAX); read++) {
    // nats-server ≥ 2.9 answers next_by_subj; the client's type for getMessage predates it.
    const message = await jsm.streams.getMessage("DLQ", { seq, next_by_subj: filter } as unknown as { seq: number });
    if (!message) return;
    yield message;
    seq = message.seq + 1;
  }
}

/**
 * Reads and replays dead letters without their payloads leaving this module: an operator (the
 * audit subgraph's API, `pnpm dlq:replay`) sees summaries and replays by DLQ sequence.
 */
export class DeadLetterQueue {
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly logger: Logger;

  constructor(js: JetStreamClient, jsm: JetStreamManager, logger: Logger) {
    this.js = js;
    this.jsm = jsm;
    this.logger = logger;
  }

  async list(options: { consumer?: string | undefined; limit: number }): Promise<DeadLetterSummary[]> {
    const letters: DeadLetterSummary[] = [];
    for await (const message of readDeadLetters(this.jsm, options.consumer, options.limit)) letters.push(summarize(message));
    return letters;
  }

  /** The letters still in DLQ among these sequences (a replayed one is gone). */
  async get(dlqSeqs: readonly number[]): Promise<DeadLetterSummary[]> {
    const found = await Promise.all(dlqSeqs.map((seq) => this.jsm.streams.getMessage("DLQ", { seq }).catch(() => null)));
    return found.filter((message) => message !== null).map(summarize);
  }

  /** How many letters wait, per consumer (read from the stream's subject counts, not the letters). */
  async countByConsumer(consumer?: string): Promise<Map<string, number>> {
    const info = await this.jsm.streams.info("DLQ", { subjects_filter: dlqFilter(consumer) });
    const counts = new Map<string, number>();
    for (const [subject, count] of Object.entries(info.state.subjects ?? {})) {
      const name = subject.split(".")[2] ?? "";
      counts.set(name, (counts.get(name) ?? 0) + count);
    }
    return counts;
  }

  /** The durables of every event stream: the consumers that can have dead letters. */
  async consumerNames(): Promise<Set<string>> {
    const names = new Set<string>();
    for (const stream of Object.keys(STREAMS) as StreamName[]) {
      if (stream === "DLQ") continue;
      for await (const consumer of this.jsm.consumers.list(stream)) names.add(consumer.name);
    }
    return names;
  }

  /**
   * Re-publishes these dead letters to their original subjects and removes them from DLQ; returns
   * how many were replayed (a letter already gone is skipped). The Msg-Id is derived from the DLQ
   * sequence, so two operators replaying the same letter at once publish it once.
   */
  async replay(dlqSeqs: readonly number[]): Promise<number> {
    let replayed = 0;
    for (const seq of dlqSeqs) {
      const message = await this.jsm.streams.getMessage("DLQ", { seq }).catch(() => null);
      if (!message) continue; // replayed meanwhile
      if (!(await this.matchesOriginal(message))) {
        const { stream, streamSeq, subject, consumer } = summarize(message);
        this.logger.warn(
          { dlqSeq: seq, stream, streamSeq, subject, consumer },
          "dead letter not replayed: its stream holds no message with its subject and body at its sequence (forged, or past the stream's age limit)",
        );
        continue;
      }
      await this.replayOne(message);
      replayed++;
    }
    return replayed;
  }

  /**
   * Whether the letter is what its stream still holds at the sequence it names, subject and body.
   * Every service may publish dead letters (NATS users: permissions.ts) and a replay publishes the
   * letter's body on the subject it names, which would let a service that can only dead-letter put
   * a saga command of its own making on transactions' subjects, through an operator's replay. The
   * original is read back instead of believed; one the stream no longer keeps (past its age limit)
   * cannot be checked, and its letter stays in DLQ.
   */
  private async matchesOriginal(message: StoredMsg): Promise<boolean> {
    const { stream, streamSeq, subject } = summarize(message);
    if (streamSeq === null || stream === "DLQ" || !Object.hasOwn(STREAMS, stream)) return false;
    const original = await this.jsm.streams.getMessage(stream, { seq: streamSeq }).catch(() => null);
    return original !== null && original.subject === subject && Buffer.from(original.data).equals(Buffer.from(message.data));
  }

  private async replayOne(message: StoredMsg): Promise<void> {
    const subject = message.header.get(DLQ_HEADERS.subject);
    const headers = natsHeaders();
    for (const [key, values] of message.header) {
      if (key.startsWith("Vp-Dlq-") || key === "Nats-Msg-Id") continue;
      for (const value of values) headers.append(key, value);
    }
    // A fresh Msg-Id: the original id is still inside the duplicate window after a quick fix.
    await this.js.publish(subject, message.data, { headers, msgID: `replay:dlq:${message.seq}` });
    await this.jsm.streams.deleteMessage("DLQ", message.seq, false).catch((error: unknown) => {
      // Deleted by a concurrent replay: it was published once (same Msg-Id), which is what counts.
      if (!isNotFound(error)) throw error;
    });
    this.logger.info({ dlqSeq: message.seq, subject, consumer: message.header.get(DLQ_HEADERS.consumer) }, "replayed dead letter");
  }
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
  const queue = new DeadLetterQueue(options.js, options.jsm, options.logger);
  const limit = Math.min(options.limit ?? DEAD_LETTER_READ_MAX, DEAD_LETTER_READ_MAX);
  const letters = await queue.list({ consumer: options.consumer, limit });
  const replayed = await queue.replay(letters.map((letter) => letter.dlqSeq));
  const waiting = await queue.countByConsumer(options.consumer);
  return { replayed, remaining: [...waiting.values()].reduce((sum, count) => sum + count, 0) };
}
