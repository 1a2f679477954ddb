/**
 * Dead letters for operators: the messages a consumer gave up on, and their replay once the cause
 * is fixed. Audit owns this because it is the operator's domain already (the ADMIN-only log of
 * every event) and because every replay must itself be audited: the request is written to audit's
 * own outbox, so it reaches the chain the way every other event does, and a rebuild from the
 * streams keeps it. Like `pnpm dlq:replay`, it works on the DLQ stream through packages/events.
 */
import { CONSUMER_NAME_PATTERN, REPLAY_MAX_DEAD_LETTERS, type DeadLetterSummary, type EventData } from "@vaultpay/events";
import { DomainError, requireAdmin, type Caller } from "@vaultpay/kit";

/** Page size limits of deadLetters. */
export const DEAD_LETTER_PAGE_DEFAULT = 100;
export const DEAD_LETTER_PAGE_MAX = 500;

/** The DLQ as this module needs it (packages/events' DeadLetterQueue). */
export interface DeadLetterPort {
  list(options: { consumer?: string | undefined; limit: number }): Promise<DeadLetterSummary[]>;
  get(dlqSeqs: readonly number[]): Promise<DeadLetterSummary[]>;
  replay(dlqSeqs: readonly number[]): Promise<number>;
  countByConsumer(consumer?: string): Promise<Map<string, number>>;
  consumerNames(): Promise<Set<string>>;
}

export type ReplayRequest = EventData<"operator.dlq.replay.requested">;

/** Writes the replay request where the audit chain will pick it up; returns its event id. */
export type RecordReplayRequest = (request: ReplayRequest) => Promise<string>;

export interface ReplayOutcome {
  replayed: number;
  /** Letters of the chosen consumer (or all) still in DLQ afterwards. */
  remaining: number;
  /** The audit event that records this replay; null when there was nothing to replay. */
  auditEventId: string | null;
}

export class DeadLetters {
  private readonly queue: DeadLetterPort;
  private readonly recordReplayRequest: RecordReplayRequest;

  constructor(queue: DeadLetterPort, recordReplayRequest: RecordReplayRequest) {
    this.queue = queue;
    this.recordReplayRequest = recordReplayRequest;
  }

  /**
   * Dead letters in the order they died, of one consumer or all. Errors: UNAUTHENTICATED,
   * FORBIDDEN (not an ADMIN), BAD_USER_INPUT (first out of range, a malformed consumer name),
   * NOT_FOUND (no such consumer).
   */
  async list(
    caller: Caller | undefined,
    args: { consumer?: string | null | undefined; first?: number | null | undefined },
  ): Promise<DeadLetterSummary[]> {
    requireAdmin(caller, "Dead letters");
    const first = args.first ?? DEAD_LETTER_PAGE_DEFAULT;
    if (!Number.isInteger(first) || first < 1 || first > DEAD_LETTER_PAGE_MAX) {
      throw new DomainError("BAD_USER_INPUT", `first must be between 1 and ${DEAD_LETTER_PAGE_MAX}`, { field: "first" });
    }
    const consumer = await this.knownConsumer(args.consumer);
    return this.queue.list({ consumer, limit: first });
  }

  /**
   * Replays the named dead letters (ids), or the first REPLAY_MAX_DEAD_LETTERS of one consumer (or
   * of all), after recording the request in the audit trail. Errors: as `list`, plus
   * BAD_USER_INPUT (an id that is not a DLQ sequence, an empty or too long list, an id of another
   * consumer than the one named) and NOT_FOUND (an id no longer in DLQ: already replayed).
   */
  async replay(
    caller: Caller | undefined,
    args: { consumer?: string | null | undefined; ids?: readonly string[] | null | undefined },
  ): Promise<ReplayOutcome> {
    requireAdmin(caller, "Replaying dead letters");
    const consumer = await this.knownConsumer(args.consumer);
    const letters = args.ids ? await this.named(args.ids, consumer) : await this.queue.list({ consumer, limit: REPLAY_MAX_DEAD_LETTERS });
    let auditEventId: string | null = null;
    let replayed = 0;
    if (letters.length > 0) {
      auditEventId = await this.recordReplayRequest({
        consumer: consumer ?? null,
        deadLetters: letters.map(({ dlqSeq, consumer: owner, stream, subject, eventId, eventType }) => ({
          dlqSeq,
          consumer: owner,
          stream,
          subject,
          eventId,
          eventType,
        })),
      });
      replayed = await this.queue.replay(letters.map((letter) => letter.dlqSeq));
    }
    const waiting = await this.queue.countByConsumer(consumer);
    return { replayed, remaining: [...waiting.values()].reduce((sum, count) => sum + count, 0), auditEventId };
  }

  private async named(ids: readonly string[], consumer: string | undefined): Promise<DeadLetterSummary[]> {
    if (ids.length === 0 || ids.length > REPLAY_MAX_DEAD_LETTERS) {
      throw new DomainError("BAD_USER_INPUT", `ids must name 1 to ${REPLAY_MAX_DEAD_LETTERS} dead letters`, { field: "ids" });
    }
    if (!ids.every((id) => /^[1-9][0-9]{0,15}$/.test(id)))
      throw new DomainError("BAD_USER_INPUT", "ids are dead letter ids as deadLetters lists them", { field: "ids" });
    const seqs = [...new Set(ids.map(Number))];
    const letters = await this.queue.get(seqs);
    const found = new Set(letters.map((letter) => letter.dlqSeq));
    const missing = seqs.filter((seq) => !found.has(seq));
    if (missing.length > 0)
      throw new DomainError("NOT_FOUND", `No dead letter ${missing.join(", ")} (already replayed?)`, { field: "ids" });
    const others = letters.filter((letter) => consumer !== undefined && letter.consumer !== consumer);
    if (others.length > 0) {
      throw new DomainError(
        "BAD_USER_INPUT",
        `Dead letter ${others.map((letter) => letter.dlqSeq).join(", ")} belongs to another consumer than ${consumer}`,
        { field: "ids" },
      );
    }
    return letters;
  }

  /** The consumer named, checked: a durable of some stream, or one that still has dead letters. */
  private async knownConsumer(name: string | null | undefined): Promise<string | undefined> {
    if (name === null || name === undefined) return undefined;
    if (!CONSUMER_NAME_PATTERN.test(name))
      throw new DomainError("BAD_USER_INPUT", "consumer must be a consumer (durable) name: letters, digits, - and _", {
        field: "consumer",
      });
    const [durables, waiting] = await Promise.all([this.queue.consumerNames(), this.queue.countByConsumer(name)]);
    if (!durables.has(name) && !waiting.has(name)) throw new DomainError("NOT_FOUND", `No consumer named ${name}`, { field: "consumer" });
    return name;
  }
}
