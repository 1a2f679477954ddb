/**
 * Customer notices for transfers that reached an end: the sender hears when a transfer completed
 * or failed, by email and — where a phone is set and an SMS provider is configured — by SMS.
 *
 * Why auth owns this: a notice needs the customer's email and phone, and auth is the only service
 * that holds them (the phone only encrypted, with auth's key ring). Transactions knows the transfer
 * but only a user id; copying contact details into transactions (or a new service) would spread
 * personal data and its keys to one more database. So auth consumes transactions' terminal events
 * (the only events it consumes) and looks the person up itself.
 *
 * At most once per transfer and status: the consuming transaction inserts one transfer_notice row
 * under a unique (transfer_id, status) constraint, next to the event id in processed_event, so a
 * redelivered or re-published event adds nothing. Sending happens after commit, in a loop that
 * claims a row (SENDING, committed) before handing it to the provider: a crash mid-send leaves
 * it SENDING and it is never sent again. A provider refusal is retried a bounded number of times.
 * Such a row is reported, not resent: stuckSendingNotices counts them for a metric and an alert.
 */
import { BATCHED_CONSUMER, type Event, type Eventing, type SqlDatabase, type SqlExecutor } from "@vaultpay/events";
import type { Logger } from "@vaultpay/kit";
import type { Notifier } from "./service.ts";
import type { Db } from "./db.ts";
import { transferNoticeMessage } from "./messages.ts";
import { DeliveryError } from "./notifiers.ts";
import {
  claimNotices,
  countStuckSending,
  settleNotices,
  insertTransferNotices,
  retryNoticeLater,
  type ClaimedNotice,
  type TransferNoticeRow,
} from "./store.ts";

export const NOTICE_CONSUMERS = { completed: "auth-notices-completed", failed: "auth-notices-failed" } as const;

/** Records the notice a terminal transfer event calls for; a second one for the same transfer and status is a no-op. */
export async function recordTransferNotice(event: Event, tx: SqlExecutor, logger: Logger): Promise<void> {
  await recordTransferNotices([event], tx, logger);
}

/** The notices a batch of terminal transfer events calls for, in one statement (a batch of one is a batch). */
export async function recordTransferNotices(events: readonly Event[], tx: SqlExecutor, logger: Logger): Promise<void> {
  const notices: TransferNoticeRow[] = [];
  for (const event of events) {
    if (event.type !== "transaction.completed" && event.type !== "transaction.failed") continue;
    const { data } = event;
    const status = event.type === "transaction.completed" ? "COMPLETED" : event.data.status;
    // Events published before userId was added cannot be attributed: nobody to tell.
    if (!data.userId || !data.currency || data.amountMinor === undefined) {
      logger.warn({ transferId: data.transferId, eventId: event.id }, "transfer event without user or amount: no notice");
      continue;
    }
    notices.push({
      transferId: data.transferId,
      status,
      userId: data.userId,
      amountMinor: BigInt(data.amountMinor),
      currency: data.currency,
      reason: event.type === "transaction.failed" ? event.data.reason : null,
      eventId: event.id,
    });
  }
  await insertTransferNotices(tx, notices);
}

export async function startNoticeConsumers<T extends SqlExecutor>(
  eventing: Eventing<T>,
  logger: Logger,
  afterCommit: () => void,
): Promise<void> {
  for (const [kind, name] of Object.entries(NOTICE_CONSUMERS)) {
    await eventing.consume({
      name,
      stream: "TRANSACTIONS",
      filterSubject: `transaction.${kind}`,
      handle: (event, tx) => recordTransferNotice(event, tx, logger),
      handleBatch: (events, tx) => recordTransferNotices(events, tx, logger),
      afterCommit,
      // A notice is not urgent to the millisecond: events arriving within 20 ms share a transaction.
      ...BATCHED_CONSUMER,
      batchLingerMs: 20,
    });
  }
}

/**
 * A send that has not ended this long after its claim was interrupted (a crash): one send is
 * bounded far below it (SMTP's per-step timeout × its attempts, SMS's after the email).
 */
export const STUCK_SENDING_AFTER_SECONDS = 300;

/**
 * Notices claimed for sending more than STUCK_SENDING_AFTER_SECONDS ago and still SENDING: the
 * customer was not told and nothing will retry (at most once). Rows claimed before claimed_at
 * existed count from their creation.
 */
export async function stuckSendingNotices(db: Pick<Db, "$queryRawUnsafe">): Promise<number> {
  return countStuckSending(db, STUCK_SENDING_AFTER_SECONDS);
}

export interface Contact {
  email: string;
  /** Null when the user has no phone (the administrator). */
  phone: string | null;
}

export interface NoticeSenderOptions {
  /** Where the notices are (the service runs the sender on its raw SQL pool). */
  db: SqlDatabase;
  notifier: Notifier & { has(channel: string): boolean };
  /** Where to send a claimed notice, from the contact its claim read; undefined for an unknown user. */
  contactOf: (notice: ClaimedNotice) => Contact | undefined | Promise<Contact | undefined>;
  logger: Logger;
  /** Provider refusals tolerated per notice before it is given up (FAILED). */
  maxAttempts?: number;
  /** Notices claimed per round. */
  batchSize?: number;
  /** A round runs at least this often, and at once when kicked. */
  pollMs?: number;
}

const RETRY_DELAYS_SECONDS = [5, 30, 120, 600] as const;

export class TransferNoticeSender {
  private readonly maxAttempts: number;
  private readonly batchSize: number;
  private readonly pollMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;

  private readonly options: NoticeSenderOptions;

  constructor(options: NoticeSenderOptions) {
    this.options = options;

    this.maxAttempts = options.maxAttempts ?? 5;
    this.batchSize = options.batchSize ?? 20;
    this.pollMs = options.pollMs ?? 1_000;
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.pollMs);
    this.timer.unref();
    this.kick();
  }

  /** Runs a round now (after a consumer committed new notices); rounds never overlap. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.round()
      .catch((error: unknown) => this.options.logger.warn({ err: error }, "transfer notices: round failed; retried on the next"))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  private async round(): Promise<void> {
    for (;;) {
      const claimed = await this.claim();
      const outcome = { sent: [] as string[], dropped: [] as string[] };
      try {
        for (const notice of claimed) {
          const result = await this.send(notice);
          if (result !== "retried") outcome[result].push(notice.id);
        }
      } finally {
        // One statement (one commit) for the round's sent and dropped notices. What is claimed is
        // never sent again: a crash before this leaves them SENDING, as a crash between send and mark did.
        await settleNotices(this.options.db, outcome);
      }
      if (claimed.length < this.batchSize || this.stopped) return;
    }
  }

  /** PENDING → SENDING, committed before any provider is called: what is claimed is sent at most once. */
  private claim(): Promise<ClaimedNotice[]> {
    return claimNotices(this.options.db, this.batchSize);
  }

  /**
   * Sends one claimed notice: "sent" when its email went out, "dropped" for an unknown user (the
   * caller marks them SENT or FAILED), "retried" when the provider refused it (rescheduled here).
   */
  private async send(notice: ClaimedNotice): Promise<"sent" | "dropped" | "retried"> {
    const { db, notifier, logger } = this.options;
    const contact = await this.options.contactOf(notice);
    if (!contact) {
      logger.warn({ transferId: notice.transfer_id }, "transfer notice for an unknown user: dropped");
      return "dropped";
    }
    const content = transferNoticeMessage({
      transferId: notice.transfer_id,
      status: notice.status === "COMPLETED" ? "COMPLETED" : "FAILED",
      amountMinor: BigInt(notice.amount_minor),
      currency: notice.currency,
      reason: notice.reason ?? undefined,
    });
    try {
      await notifier.send({ to: contact.email, channel: "email", subject: content.subject, body: content.text, code: null });
    } catch (error) {
      const transient = !(error instanceof DeliveryError) || error.transient;
      const giveUp = !transient || notice.attempts >= this.maxAttempts;
      const delaySeconds = RETRY_DELAYS_SECONDS[Math.min(notice.attempts - 1, RETRY_DELAYS_SECONDS.length - 1)]!;
      await retryNoticeLater(db, notice.id, giveUp, delaySeconds);
      logger.warn(
        { transferId: notice.transfer_id, attempts: notice.attempts, gaveUp: giveUp, reason: (error as Error).message },
        "transfer notice not sent",
      );
      return "retried";
    }
    // The SMS is a courtesy copy: once the email went out, an SMS failure does not resend the email.
    if (contact.phone && notifier.has("sms")) {
      await notifier.send({ to: contact.phone, channel: "sms", body: content.text, code: null }).catch((error: unknown) => {
        logger.warn({ transferId: notice.transfer_id, reason: (error as Error).message }, "transfer notice SMS not sent");
      });
    }
    logger.info({ transferId: notice.transfer_id, status: notice.status }, "transfer notice sent");
    return "sent";
  }
}
