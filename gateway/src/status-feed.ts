/**
 * The feed of `transaction.status.changed` events behind the gateway's subscriptions: one NATS
 * subscription for the whole gateway, fanned out by transfer id, and each subscription's own inbox.
 */
import { parseEvent, type EventData, type NatsConnection } from "@vaultpay/events";
import type { Logger } from "@vaultpay/kit";

export type StatusEvent = EventData<"transaction.status.changed">;

/** Status events fanned out to the listeners of their transfer. */
export class StatusFeed {
  private readonly listeners = new Map<string, Set<(event: StatusEvent) => void>>();

  /** Hands an event to the listeners of its transfer (the NATS loop calls this). */
  deliver(event: StatusEvent): void {
    for (const listener of this.listeners.get(event.transferId) ?? []) listener(event);
  }

  /** Whether any subscription here follows this transfer. */
  listens(transferId: string): boolean {
    return this.listeners.has(transferId);
  }

  listen(transferId: string, listener: (event: StatusEvent) => void): () => void {
    const set = this.listeners.get(transferId) ?? new Set();
    set.add(listener);
    this.listeners.set(transferId, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(transferId);
    };
  }
}

/**
 * A StatusFeed fed from core NATS, which sees JetStream's messages as they are stored; a missed one
 * is caught by re-checks. Every transfer's status changes reach every gateway replica, and most
 * have no subscriber here: an event is validated (parseEvent) only when its transfer has one.
 */
export function statusFeedFromNats(nc: NatsConnection, logger: Logger): StatusFeed {
  const feed = new StatusFeed();
  const subscription = nc.subscribe("transaction.status.changed");
  void (async () => {
    for await (const message of subscription) {
      try {
        const raw = message.json<{ data?: { transferId?: unknown } } | null>();
        const transferId = raw?.data?.transferId;
        if (typeof transferId === "string" && !feed.listens(transferId)) continue;
        const event = parseEvent(raw);
        if (event.type === "transaction.status.changed") feed.deliver(event.data);
      } catch (error) {
        logger.warn({ err: error }, "unreadable status event");
      }
    }
  })();
  return feed;
}

/**
 * One subscription's events for its transfer, queued from the moment it listens, so nothing that
 * arrives while the snapshot is being read is lost.
 */
export class StatusInbox {
  private readonly queue: StatusEvent[] = [];
  private wake: (() => void) | undefined;
  private readonly unlisten: () => void;

  constructor(feed: StatusFeed, transferId: string) {
    this.unlisten = feed.listen(transferId, (event) => {
      this.queue.push(event);
      this.wake?.();
    });
  }

  /** The next event, waiting at most `waitMs` for one; undefined when none came (time to re-check). */
  async next(waitMs: number): Promise<StatusEvent | undefined> {
    if (this.queue.length === 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        timer = setTimeout(resolve, waitMs);
      });
      clearTimeout(timer);
      this.wake = undefined;
    }
    return this.queue.shift();
  }

  close(): void {
    this.unlisten();
  }
}
