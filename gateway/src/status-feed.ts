/**
 * The feed of `transaction.status.changed` events behind the gateway's subscriptions: a NATS
 * subscription per transfer followed here, fanned out to each subscription's own inbox.
 */
import { statusChangedSubject, parseEvent, type EventData, type Msg, type NatsConnection } from "@vaultpay/events";
import { isUuid, type Logger, type Metrics } from "@vaultpay/kit";

export type StatusEvent = EventData<"transaction.status.changed">;

/** Where a feed's events come from, told when a transfer gains its first listener and loses its last. */
export interface StatusSource {
  /** Starts receiving the transfer's changes; resolves once they are received (or it stopped waiting). */
  follow(transferId: string): Promise<void>;
  unfollow(transferId: string): void;
}

/** Status events fanned out to the listeners of their transfer. */
export class StatusFeed {
  /** By transfer: its listeners, and when its changes reach this feed (the source's follow). */
  private readonly followed = new Map<string, { listeners: Set<(event: StatusEvent) => void>; ready: Promise<void> }>();
  private readonly source: StatusSource | undefined;

  constructor(source?: StatusSource) {
    this.source = source;
  }

  /** Hands an event to the listeners of its transfer (the NATS loop calls this). */
  deliver(event: StatusEvent): void {
    for (const listener of this.followed.get(event.transferId)?.listeners ?? []) listener(event);
  }

  /** Whether any subscription here follows this transfer. */
  listens(transferId: string): boolean {
    return this.followed.has(transferId);
  }

  /** How many listeners (subscriptions' inboxes) are open. */
  listening(): number {
    let open = 0;
    for (const { listeners } of this.followed.values()) open += listeners.size;
    return open;
  }

  /**
   * Adds a listener; `ready` resolves once the transfer's changes reach this feed. The id is taken
   * in lower case, as events carry it (PostgreSQL's form): a transfer asked for in upper case is
   * the same transfer, and its changes must reach it.
   */
  listen(id: string, listener: (event: StatusEvent) => void): { ready: Promise<void>; stop: () => void } {
    const transferId = id.toLowerCase();
    let entry = this.followed.get(transferId);
    if (!entry) {
      entry = { listeners: new Set(), ready: this.source?.follow(transferId) ?? Promise.resolve() };
      this.followed.set(transferId, entry);
    }
    entry.listeners.add(listener);
    const followed = entry;
    return {
      ready: followed.ready,
      stop: () => {
        followed.listeners.delete(listener);
        if (followed.listeners.size > 0 || this.followed.get(transferId) !== followed) return;
        this.followed.delete(transferId);
        this.source?.unfollow(transferId);
      },
    };
  }
}

/** How long a new subscription waits for NATS to confirm its interest before reading the snapshot. */
const FOLLOW_CONFIRM_MS = 2_000;

/**
 * A StatusFeed fed from core NATS, which sees JetStream's messages as they are stored; a missed one
 * is caught by re-checks. Each followed transfer is its own subscription (`statusChangedSubject`),
 * so the server sends this gateway only those. A flush (one round trip) confirms the interest before
 * the subscription reads its snapshot; in a cluster the interest reaches the other servers a moment
 * later, and a change published there in that moment waits for the re-check. The bare subject is
 * also read: outbox rows written before status changes had their own subjects are published on it.
 */
export function statusFeedFromNats(nc: NatsConnection, logger: Logger, metrics?: Pick<Metrics, "counter" | "gauge">): StatusFeed {
  const subscriptions = new Map<string, ReturnType<NatsConnection["subscribe"]>>();
  const feed: StatusFeed = new StatusFeed({
    follow(transferId) {
      // A transfer id that is no uuid names no transfer (and must not become a subject's wildcard).
      if (!isUuid(transferId)) return Promise.resolve();
      subscriptions.set(transferId, nc.subscribe(statusChangedSubject(transferId), { callback: receive }));
      let timer: NodeJS.Timeout | undefined;
      const waited = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, FOLLOW_CONFIRM_MS);
      });
      return Promise.race([nc.flush().catch(() => undefined), waited]).finally(() => clearTimeout(timer));
    },
    unfollow(transferId) {
      subscriptions.get(transferId)?.unsubscribe();
      subscriptions.delete(transferId);
    },
  });
  const received = metrics?.counter(
    "vaultpay_status_changes_received_total",
    "Transfer status changes this gateway received from NATS (only those of transfers its subscriptions follow)",
    [],
  );
  metrics?.gauge("vaultpay_subscriptions_active", "transferStatusChanged subscriptions open on this gateway", [], async () => [
    { labels: {}, value: feed.listening() },
  ]);
  function receive(error: Error | null, message: Msg): void {
    if (error) {
      // A subscription the server refused (a permissions violation): its transfer's changes come
      // from the re-checks only, so say so.
      logger.warn({ err: error }, "status subscription refused");
      return;
    }
    received?.inc();
    try {
      const raw = message.json<{ data?: { transferId?: unknown } } | null>();
      const transferId = raw?.data?.transferId;
      if (typeof transferId === "string" && !feed.listens(transferId)) return;
      const event = parseEvent(raw);
      if (event.type === "transaction.status.changed") feed.deliver(event.data);
    } catch (caught) {
      logger.warn({ err: caught }, "unreadable status event");
    }
  }
  nc.subscribe("transaction.status.changed", { callback: receive });
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
  /** Resolves once the transfer's changes reach the inbox: read the snapshot after it. */
  readonly ready: Promise<void>;

  constructor(feed: StatusFeed, transferId: string) {
    const { ready, stop } = feed.listen(transferId, (event) => {
      this.queue.push(event);
      this.wake?.();
    });
    this.ready = ready;
    this.unlisten = stop;
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
