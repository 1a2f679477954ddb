/**
 * How far behind durable consumers are, in time: what a saga asks before it sends a command again
 * that may only be waiting in a queue.
 */
import type { ConsumerInfo, JetStreamManager, MsgRequest } from "@nats-io/jetstream";
import type { StreamName } from "./streams.ts";

/**
 * How long the oldest message a durable has not acknowledged yet has waited since it was stored,
 * in ms; 0 when the durable has none. That message is the first on the durable's filter past its
 * ack floor (STREAM.MSG.GET with `next_by_subj`, which nats-server 2.9 answers). One acknowledged
 * out of order past the floor can make the wait read longer than it is, never shorter.
 */
export async function oldestUnacknowledgedWaitMs(jsm: JetStreamManager, consumer: ConsumerInfo, now = Date.now()): Promise<number> {
  if (consumer.num_pending + consumer.num_ack_pending === 0) return 0;
  const query = { seq: consumer.ack_floor.stream_seq + 1, next_by_subj: consumer.config.filter_subject ?? ">" };
  // The client's MsgRequest type leaves out next_by_subj, which the API takes (nats.js names it only for direct gets).
  const message = await jsm.streams.getMessage(consumer.stream_name, query as unknown as MsgRequest).catch(() => null);
  return message ? Math.max(0, now - message.time.getTime()) : 0;
}

/**
 * The oldest unacknowledged waits (oldestUnacknowledgedWaitMs) of the durables on `streams`, by
 * the hop `hopOf` names for each (undefined: not counted); durables on one hop read the same
 * messages side by side, so the hop's wait is their longest.
 */
export async function queuedWaits(
  jsm: JetStreamManager,
  streams: readonly StreamName[],
  hopOf: (consumer: ConsumerInfo) => string | undefined,
  now = Date.now(),
): Promise<Map<string, number>> {
  const waits = new Map<string, number>();
  for (const stream of streams) {
    for (const consumer of await jsm.consumers.list(stream).next()) {
      const hop = hopOf(consumer);
      if (hop === undefined) continue;
      const wait = await oldestUnacknowledgedWaitMs(jsm, consumer, now);
      waits.set(hop, Math.max(waits.get(hop) ?? 0, wait));
    }
  }
  return waits;
}

/**
 * Samples of hops' waits (queuedWaits), kept for `keepMs`. A message published at `since` and
 * passed from hop to hop has waited at each at most the longest wait sampled there since (to
 * within a sample's interval): `longestSince` adds those up. Waits sampled only now would miss a
 * queue that has shrunk since the message passed it.
 */
export class QueueWaitHistory {
  private samples: Array<{ at: number; waits: ReadonlyMap<string, number> }> = [];

  private readonly keepMs: number;

  constructor(keepMs: number) {
    this.keepMs = keepMs;
  }

  record(at: number, waits: ReadonlyMap<string, number>): void {
    this.samples.push({ at, waits });
    // One sample older than the window stays: it covers the window's start.
    while (this.samples.length > 1 && this.samples[1]!.at <= at - this.keepMs) this.samples.shift();
  }

  /** When the last sample was taken; undefined before the first. */
  lastSampledAt(): number | undefined {
    return this.samples.at(-1)?.at;
  }

  /** The longest wait of each of `hops` sampled from just before `since` on, added up; 0 without samples. */
  longestSince(since: number, hops: readonly string[]): number {
    let total = 0;
    for (const hop of hops) {
      let longest = 0;
      for (let i = 0; i < this.samples.length; i++) {
        if ((this.samples[i + 1]?.at ?? Number.POSITIVE_INFINITY) <= since) continue; // a later sample still precedes `since`
        longest = Math.max(longest, this.samples[i]!.waits.get(hop) ?? 0);
      }
      total += longest;
    }
    return total;
  }
}
