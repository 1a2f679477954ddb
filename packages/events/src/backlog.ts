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
 * The waits of the oldest unacknowledged messages of the durables on `streams` that `chosen` picks,
 * added up: how long a message passing through each of them in turn may have been queued.
 */
export async function queuedWaitMs(
  jsm: JetStreamManager,
  streams: readonly StreamName[],
  chosen: (consumer: ConsumerInfo) => boolean,
  now = Date.now(),
): Promise<number> {
  let total = 0;
  for (const stream of streams) {
    for (const consumer of await jsm.consumers.list(stream).next()) {
      if (chosen(consumer)) total += await oldestUnacknowledgedWaitMs(jsm, consumer, now);
    }
  }
  return total;
}
