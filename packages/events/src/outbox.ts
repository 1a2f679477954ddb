import { headers as natsHeaders } from "@nats-io/nats-core";
import type { JetStreamClient } from "@nats-io/jetstream";
import { errorSummary, isInfrastructureUnavailable, type Logger } from "@vaultpay/kit";
import { SpanKind, TRACEPARENT, endSpan, startSpan, traceparentOf, type Span } from "@vaultpay/telemetry";
import type { Event } from "./envelope.ts";
import { eventSubject } from "./streams.ts";
import { ASYNCHRONOUS_COMMIT, preferIndexScans, walkIndexes, type SqlDatabase, type SqlExecutor } from "./sql.ts";

/**
 * Events appended inside a transaction that buffers them (withBufferedOutbox), by transaction:
 * those still to write, and those the handler already wrote itself (takeBufferedEvents).
 */
const buffers = new WeakMap<SqlExecutor, { pending: Event[]; written: Event[] }>();

/**
 * Writes an event into the outbox inside the caller's transaction: the event exists if and only if
 * the state change it describes committed. Inside withBufferedOutbox the row is written with the
 * others of the same transaction, in one statement, before it commits.
 */
export async function appendToOutbox(tx: SqlExecutor, event: Event): Promise<void> {
  const buffer = buffers.get(tx);
  if (buffer) buffer.pending.push(event);
  else await insertOutboxRows(tx, [event]);
}

/**
 * The events appended to `tx`'s outbox so far and not yet written, for the caller to write in a
 * statement it sends anyway (outboxRowsCte): one round trip fewer in a consumer's transaction, one
 * hand-off fewer on each saga hop. They leave the buffer and stay among withBufferedOutbox's
 * `events`. Outside withBufferedOutbox appendToOutbox has written them already: [].
 */
export function takeBufferedEvents(tx: SqlExecutor): Event[] {
  const buffer = buffers.get(tx);
  if (!buffer) return [];
  const events = buffer.pending.splice(0);
  buffer.written.push(...events);
  return events;
}

/**
 * A data-modifying CTE (named `outbox_rows`) that writes events to the outbox in their order, for a
 * statement that writes anyway; its four arrays are parameters $first to $first+3, valued by
 * outboxRowsParameters. seq, assigned row by row, follows the order (WITH ORDINALITY).
 */
export function outboxRowsCte(first: number): string {
  return `outbox_rows AS (
       INSERT INTO outbox_event (id, subject, type, payload)
       ${outboxRowsSelect(first)}
     )`;
}

/**
 * The SELECT of outbox rows from outboxRowsParameters' four arrays (parameters $first on), in their
 * order. `join`: a CTE the rows are joined with, so none is written when it has no row.
 */
export function outboxRowsSelect(first: number, join?: string): string {
  return `SELECT e.id, e.subject, e.type, e.payload
         FROM ${join ? `${join}, ` : ""}unnest($${first}::uuid[], $${first + 1}::text[], $${first + 2}::text[], $${first + 3}::jsonb[])
              WITH ORDINALITY AS e(id, subject, type, payload, n) ORDER BY e.n`;
}

/** The values of outboxRowsCte's four parameters: ids, subjects (eventSubject), types, payloads. */
export function outboxRowsParameters(events: readonly Event[]): [string[], string[], string[], string[]] {
  return [
    events.map((event) => event.id),
    events.map(eventSubject),
    events.map((event) => event.type),
    events.map((event) => JSON.stringify(event)),
  ];
}

/**
 * Runs `work` with the events it appends to `tx`'s outbox held back, then writes them all in one
 * statement, in the order they were appended (the outbox's seq keeps that order for the relay). A
 * consumer's batch of 128 events emits up to ~250: one round trip instead of one each. When `work`
 * throws, nothing is written (the transaction rolls back anyway). `events`: every event appended,
 * in the outbox's order (those the handler wrote itself first: they were written first), for the
 * relay to publish once the transaction committed (OutboxRelay.publishCommitted).
 */
export async function withBufferedOutbox<R>(tx: SqlExecutor, work: () => Promise<R>): Promise<{ result: R; events: Event[] }> {
  if (buffers.has(tx)) return { result: await work(), events: [] }; // the outer call writes them
  const buffer = { pending: [] as Event[], written: [] as Event[] };
  buffers.set(tx, buffer);
  let result: R;
  try {
    result = await work();
  } finally {
    buffers.delete(tx);
  }
  if (buffer.pending.length > 0) await insertOutboxRows(tx, buffer.pending);
  return { result, events: [...buffer.written, ...buffer.pending] };
}

async function insertOutboxRows(tx: SqlExecutor, events: Event[]): Promise<void> {
  if (events.length === 1) {
    const [event] = events as [Event];
    await tx.$executeRawUnsafe(
      `INSERT INTO outbox_event (id, subject, type, payload) VALUES ($1::uuid, $2, $3, $4::jsonb)`,
      event.id,
      eventSubject(event),
      event.type,
      JSON.stringify(event),
    );
    return;
  }
  await tx.$executeRawUnsafe(
    `INSERT INTO outbox_event (id, subject, type, payload) ${outboxRowsSelect(1)}`,
    ...outboxRowsParameters(events),
  );
}

/**
 * The headers every event is published with. `traceparent` (W3C) names the publishing span when
 * there is one, else the span that emitted the event: consumers start their spans as its children.
 */
export function eventHeaders(event: Pick<Event, "type" | "correlationId" | "traceparent">, publishSpan?: Span) {
  const headers = natsHeaders();
  headers.set("Vp-Event-Type", event.type);
  headers.set("Vp-Correlation-Id", event.correlationId);
  const traceparent = traceparentOf(publishSpan) ?? event.traceparent;
  if (traceparent) headers.set(TRACEPARENT, traceparent);
  return headers;
}

/**
 * Publishes one outbox row. While tracing, a producer span, child of the span that wrote the event
 * (its stored traceparent: the relay runs later, in no request's context), covers the publish.
 */
async function publishRow(js: JetStreamClient, row: Pick<OutboxRow, "id" | "subject" | "payload">, timeoutMs: number) {
  const span = row.payload.traceparent
    ? startSpan(`publish ${row.subject}`, {
        kind: SpanKind.PRODUCER,
        parent: row.payload.traceparent,
        attributes: { "messaging.system": "nats", "messaging.destination.name": row.subject, "messaging.message.id": row.id },
      })
    : undefined;
  try {
    const ack = await js.publish(row.subject, JSON.stringify(row.payload), {
      msgID: row.id,
      headers: eventHeaders(row.payload, span),
      timeout: timeoutMs,
    });
    endSpan(span);
    return ack;
  } catch (error) {
    endSpan(span, error);
    throw error;
  }
}

export interface OutboxRelayOptions {
  db: SqlDatabase;
  js: JetStreamClient;
  logger: Logger;
  /** Rows claimed per transaction. */
  batchSize?: number;
  /** Poll interval when idle; `kick()` wakes the relay sooner after a local commit. */
  idleMs?: number;
  /** Upper bound of the back-off while NATS or the database is unavailable. */
  maxBackoffMs?: number;
  publishTimeoutMs?: number;
  /**
   * How long publishCommitted's acknowledgements gather before they are marked published together
   * (default 100 ms). The marks are off the saga's path; at 20 ms they were still ~1.7 commits per
   * transfer at 120 transfers/s over the four services' relays, about as many as the claims they
   * replaced. Longer only means more rows a crash leaves to publish again, and more that the poll's
   * claim marks itself (it waits for their publishes; it does not send them twice).
   */
  markLingerMs?: number;
  /**
   * A poll's claim takes only rows at least this old (default 1 s): younger ones are published at
   * their commit (publishCommitted) and marked within markLingerMs. A kick's claim takes any.
   */
  pollMinAgeMs?: number;
}

/**
 * The relay's claim of up to $1 pending rows, oldest first, marked published (see publishBatch).
 * Ordered by (published_at, seq), all NULL then seq, which is the outbox index's own order: with
 * `ORDER BY seq` alone the planner needed a sort after that index, so on statistics from when the
 * table was small it took the primary key instead, filtered by published_at, stepping over every
 * published row: ~20 ms per claim at 20,000 rows, the costliest statement of transactions'
 * database in the saga benchmark (bench/saga-results.md, 2026-12-03; test/outbox-claim.test.ts).
 * The claimed rows are updated by their physical address (`ctid`, a TID scan), which no statistics
 * can turn into a scan: as `seq IN (SELECT …)`, a semi-join, the plan made on the statistics of a
 * freshly pruned outbox (ANALYZE saw no live rows, VACUUM had not yet removed the dead ones) looked
 * each claimed row up by a walk of the whole (published_at, seq) index: ~100 ms per claim in the
 * saga benchmark's open loop after `pnpm reconcile --prune` (2026-12-06). The rows are locked by
 * the subquery (FOR UPDATE), so their address cannot change before the update.
 */
export const CLAIM_OUTBOX_ROWS = `UPDATE outbox_event SET published_at = now()
  WHERE ctid = ANY(ARRAY(SELECT ctid FROM outbox_event WHERE published_at IS NULL ORDER BY published_at, seq LIMIT $1 FOR UPDATE SKIP LOCKED))
  RETURNING seq, ctid::text AS ctid, id::text AS id, subject, payload`;

/**
 * Marks rows publishCommitted got acknowledged, by event id: the unique index, walked whatever the
 * statistics of a pruned outbox say (walkIndexes). A row a claim marked meanwhile stays as it is.
 */
const MARK_OUTBOX_ROWS = `UPDATE outbox_event SET published_at = now() WHERE id = ANY($1::uuid[]) AND published_at IS NULL`;

/**
 * The claim of up to `limit` rows as a statement without parameters (the transaction's opening
 * statement); with `minAgeMs`, only rows whose transaction began at least that long ago (a poll's
 * claim: younger rows are being published at their commit, publishCommitted).
 */
export function claimOutboxRowsSql(limit: number, minAgeMs = 0): string {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new Error(`an outbox claim takes a positive whole number of rows, not ${limit}`);
  if (!Number.isSafeInteger(minAgeMs) || minAgeMs < 0)
    throw new Error(`an outbox claim's minimum age is a whole number of ms, not ${minAgeMs}`);
  const claim = CLAIM_OUTBOX_ROWS.replace("$1", String(limit));
  return minAgeMs === 0
    ? claim
    : claim.replace(
        "WHERE published_at IS NULL ORDER BY",
        `WHERE published_at IS NULL AND created_at < now() - interval '${minAgeMs} milliseconds' ORDER BY`,
      );
}

/** An event publishCommitted holds back, and how to settle the promise a claim meeting its row awaits. */
interface HeldEvent {
  event: Event;
  settle: { resolve: (ack: unknown) => void; reject: (error: unknown) => void };
}

interface OutboxRow {
  seq: bigint;
  /** The marked row's address, stable while this transaction holds its lock. */
  ctid: string;
  id: string;
  subject: string;
  payload: Event;
}

/**
 * Publishes committed outbox rows to JetStream and marks them published. A transaction that knows
 * its events hands them over after its commit (publishCommitted: published at once, marked in
 * batches); the claim publishes the rest — what a crash, a refused publish or another writer left —
 * on a kick or a poll. Rows are claimed with FOR UPDATE SKIP LOCKED, so several replicas share the
 * work without publishing a row twice at once; a crash after publishing but before marking
 * republishes with the same Nats-Msg-Id, which JetStream drops inside its duplicate window, and
 * consumers dedupe by event id beyond it.
 */
export class OutboxRelay {
  private readonly batchSize: number;
  private readonly idleMs: number;
  private readonly maxBackoffMs: number;
  private readonly publishTimeoutMs: number;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private kicked = false;
  /** publishCommitted's publishes, by event id, until their rows are marked (or the publish failed). */
  private readonly direct = new Map<string, Promise<unknown>>();
  /** Ids whose direct publish JetStream acknowledged, for the next mark. */
  private toMark: string[] = [];
  private marking: Promise<void> | undefined;
  private endMarkLinger: (() => void) | undefined;
  private readonly markLingerMs: number;
  private readonly pollMinAgeMs: number;
  /** publishCommitted's publishes not yet acknowledged or failed. */
  private publishing = 0;
  /** Committed events that wait for the publishes in flight, each with the outcome its `direct` entry awaits. */
  private held: HeldEvent[] = [];

  private readonly options: OutboxRelayOptions;

  constructor(options: OutboxRelayOptions) {
    this.options = options;

    this.batchSize = options.batchSize ?? 100;
    this.idleMs = options.idleMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
    this.markLingerMs = options.markLingerMs ?? 100;
    this.pollMinAgeMs = options.pollMinAgeMs ?? 1_000;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Wakes the relay now; call after committing a transaction that appended events. */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  /**
   * Publishes the events a transaction has just committed to the outbox, in their order, without
   * waiting for a claim: no relay transaction, wake-up or round trip before the next hop hears of
   * them. While an earlier commit's publishes are in flight, these wait for the acknowledgements and
   * go out with whatever else commits meanwhile (Nagle's rule), in order: the consumer downstream
   * meets them as one batch instead of a transaction each, and an idle relay still sends at once.
   * Acknowledged ones are marked published together, one statement for whatever was
   * acknowledged while the previous mark ran. Nothing depends on this for delivery: a publish that
   * fails, a mark that fails and a crash before either leave the row pending, and the claim
   * publishes it (under the same Nats-Msg-Id: a copy JetStream already holds is dropped inside its
   * duplicate window; consumers dedupe by event id beyond it). A claim that meets a row published
   * here, not yet marked, waits for this publish instead of making its own. Call only with events
   * whose transaction committed.
   */
  publishCommitted(events: readonly Event[]): void {
    if (events.length === 0) return;
    if (!this.running) {
      this.kick();
      return;
    }
    if (this.publishing === 0) {
      this.sendCommitted(events.map((event) => ({ event })));
      return;
    }
    // Held until the publishes in flight are acknowledged (or fail); then sent with the rest held.
    for (const event of events) {
      const outcome = new Promise((resolve, reject) => this.held.push({ event, settle: { resolve, reject } }));
      // Awaited only by a claim that meets the row; a failure is reported where the publish settles.
      outcome.catch(() => {});
      this.direct.set(event.id, outcome);
    }
  }

  private sendCommitted(events: ReadonlyArray<{ event: Event; settle?: HeldEvent["settle"] }>): void {
    for (const { event, settle } of events) {
      // Issued in order on one connection, as a claim's are, on the subject every outbox row is
      // written with (outboxRowsParameters).
      const published = publishRow(this.options.js, { id: event.id, subject: eventSubject(event), payload: event }, this.publishTimeoutMs);
      this.publishing += 1;
      if (settle) published.then(settle.resolve, settle.reject);
      else this.direct.set(event.id, published);
      published
        .then(
          () => {
            this.toMark.push(event.id);
            this.marking ??= this.markPublished();
          },
          (error: unknown) => {
            this.direct.delete(event.id);
            // NATS away: the relay's claim, woken here, reports it (once per back-off, not once per event).
            if (!isInfrastructureUnavailable(error)) {
              this.options.logger.warn({ err: error, eventId: event.id }, "outbox row not published at commit; the relay retries it");
            }
            this.kick();
          },
        )
        .finally(() => {
          this.publishing -= 1;
          if (this.publishing === 0 && this.held.length > 0) {
            const next = this.held;
            this.held = [];
            this.sendCommitted(next);
          }
        });
    }
  }

  /** Marks what publishCommitted got acknowledged, until nothing is left (one mark at a time). */
  private async markPublished(): Promise<void> {
    while (this.toMark.length > 0) {
      // Off the saga's path: wait a little so one mark covers many publishes (a relay transaction
      // per hop is what publishCommitted saves); stop() cuts the wait short.
      if (this.running) {
        await this.sleep(this.markLingerMs, (wake) => {
          this.endMarkLinger = wake;
        });
      }
      this.endMarkLinger = undefined;
      const ids = this.toMark;
      this.toMark = [];
      try {
        // Asynchronous commit, as the claim's: a lost mark leaves the row to the claim, published again under its id.
        await this.options.db.$transaction(
          async (tx) => {
            // SqlPool begins with both settings; Prisma's client (tests, tools) needs them as statements.
            if (tx.walksIndexes !== true) {
              await walkIndexes(tx);
              await tx.$queryRawUnsafe(ASYNCHRONOUS_COMMIT);
            }
            return tx.$executeRawUnsafe(MARK_OUTBOX_ROWS, ids);
          },
          { timeout: 10_000, maxWait: 10_000, asynchronousCommit: true },
        );
      } catch (error) {
        this.options.logger.warn(
          { ...failureDetail(error), rows: ids.length },
          "published outbox rows not marked; the relay publishes them again",
        );
      } finally {
        for (const id of ids) this.direct.delete(id);
      }
    }
    this.marking = undefined;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    await Promise.allSettled([...this.direct.values()]);
    this.endMarkLinger?.();
    await this.marking;
  }

  /**
   * Publishes one batch and marks what JetStream acknowledged. A row that fails stays pending and
   * is retried, without holding back the rows after it (a row that can never be published must not
   * stop a service's events). Exposed for tests and tools. `minAgeMs`: claim only rows at least
   * that old (claimOutboxRowsSql).
   */
  async publishBatch(minAgeMs = 0): Promise<{ claimed: number; published: number; firstError?: unknown }> {
    const { db, js } = this.options;
    const claim = claimOutboxRowsSql(this.batchSize, minAgeMs);
    return db.$transaction(
      async (tx, opened) => {
        // Claimed and marked in one statement; the mark commits only with the publishes that
        // JetStream acknowledged (a failed row is unmarked below, a crash rolls all of it back).
        // The commit does not wait for the WAL flush (asynchronousCommit): a crash that loses the
        // marks leaves the rows pending, as a crash between publish and commit always could, and
        // they are published again under the same Nats-Msg-Id. One fsync fewer per relay batch,
        // and the next batch is claimed without waiting for it.
        // SqlPool runs the settings and the prepared claim in BEGIN's round trip (`opening`); elsewhere here.
        let rows = opened as OutboxRow[] | undefined;
        if (rows === undefined) {
          await preferIndexScans(tx);
          await tx.$queryRawUnsafe(ASYNCHRONOUS_COMMIT);
          rows = await tx.$queryRawUnsafe<OutboxRow[]>(claim);
        }
        if (rows.length === 0) return { claimed: 0, published: 0 };
        // RETURNING has no order: the outbox's is seq's.
        rows.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
        // Issued in order on one connection, so the stream keeps the outbox order.
        // async: a row that throws while being prepared fails alone, like one JetStream refuses.
        // A row publishCommitted is publishing (not yet marked): its publish, not a second one.
        const results = await Promise.allSettled(
          rows.map(async (row) => {
            const direct = this.direct.get(row.id);
            return direct ? direct.catch(() => publishRow(js, row, this.publishTimeoutMs)) : publishRow(js, row, this.publishTimeoutMs);
          }),
        );
        const published = rows.filter((_, index) => results[index]!.status === "fulfilled");
        const unpublished = rows.filter((_, index) => results[index]!.status === "rejected");
        if (unpublished.length > 0) {
          // By address, as claimed: a lookup by seq could meet the plan of a pruned outbox (see CLAIM_OUTBOX_ROWS).
          await tx.$executeRawUnsafe(
            `UPDATE outbox_event SET published_at = NULL WHERE ctid = ANY($1::tid[])`,
            unpublished.map((row) => row.ctid),
          );
        }
        const failed = results.find((result): result is PromiseRejectedResult => result.status === "rejected");
        return { claimed: rows.length, published: published.length, ...(failed ? { firstError: failed.reason } : {}) };
      },
      // No preferIndexScans: SqlPool walks indexes anyway, and its plan for the claim (which has no
      // parameters) is made once per connection; custom plans would make it again on every call.
      { timeout: this.publishTimeoutMs * 2 + 10_000, maxWait: 10_000, asynchronousCommit: true, opening: claim },
    );
  }

  private async run(): Promise<void> {
    let backoffMs = 100;
    while (this.running) {
      let kicked = false;
      try {
        // A kick (a writer that did not hand its events over, a publish at commit that failed) asks
        // for every pending row; a poll leaves the young ones to publishCommitted. Claiming those,
        // under load the polls met the rows of the mark's gathering and claimed them, more than
        // once per poll (a full claim is followed by the next at once): transactions on top of the marks.
        kicked = this.kicked;
        this.kicked = false;
        const batch = await this.publishBatch(kicked ? 0 : this.pollMinAgeMs);
        if (batch.firstError !== undefined) {
          // Nothing went out (NATS away, or only unpublishable rows left): back off. Otherwise go on.
          if (batch.published === 0) throw batch.firstError;
          this.options.logger.warn(
            { ...failureDetail(batch.firstError), published: batch.published, claimed: batch.claimed },
            "some outbox rows not published; retrying them",
          );
        }
        backoffMs = 100;
        if (batch.claimed === this.batchSize) {
          this.kicked ||= kicked;
          continue;
        }
        if (!this.kicked) await this.sleep(this.idleMs);
      } catch (error) {
        this.kicked ||= kicked; // what the kick asked for is still pending
        this.options.logger.warn({ ...failureDetail(error), retryInMs: backoffMs }, "outbox relay failed; retrying");
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, this.maxBackoffMs);
      }
    }
  }

  /** Waits `ms`, or less: `keepWake` gets the function that ends the wait (the loop's `wake` by default). */
  private sleep(
    ms: number,
    keepWake: (wake: () => void) => void = (wake) => {
      this.wake = wake;
    },
  ): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      keepWake(done);
    });
  }
}

/** A dependency restarting (a NATS node lost, a stream's leader moving) is expected: one line without a stack. Anything else in full. */
function failureDetail(error: unknown): { reason: string } | { err: unknown } {
  return isInfrastructureUnavailable(error) ? { reason: errorSummary(error) } : { err: error };
}
