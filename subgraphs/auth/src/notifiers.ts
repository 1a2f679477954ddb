import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import nodemailer from "nodemailer";
import type { Logger } from "@vaultpay/kit";
import type { Notifier, OutgoingMessage } from "./service.ts";

/**
 * The real senders behind auth's Notifier port: email over SMTP (nodemailer) and SMS through an
 * HTTPS provider. Each tries a bounded number of times within a bounded time, then throws a
 * DeliveryError; the caller decides what the customer hears (an OTP: UNAVAILABLE, retry).
 */

/** A message could not be handed to its provider. Carries no address, body or code. */
export class DeliveryError extends Error {
  override name = "DeliveryError";
  readonly channel: string;
  /** False when trying again cannot help (the provider refused the message itself). */
  readonly transient: boolean;

  constructor(channel: string, reason: string, transient: boolean) {
    super(`${channel} delivery failed: ${reason}`);
    this.channel = channel;
    this.transient = transient;
  }
}

export interface RetryPolicy {
  maxAttempts: number;
  /** Wait before the second attempt; doubled for each later one. */
  backoffMs: number;
}

/** Runs `attempt` until it succeeds, fails permanently, or `maxAttempts` are spent. */
async function withRetries(policy: RetryPolicy, attempt: () => Promise<void>): Promise<void> {
  for (let number = 1; ; number++) {
    try {
      return await attempt();
    } catch (error) {
      const transient = !(error instanceof DeliveryError) || error.transient;
      if (!transient || number >= policy.maxAttempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, policy.backoffMs * 2 ** (number - 1)));
    }
  }
}

export type SmtpTls = "starttls" | "implicit" | "none";

export interface SmtpSettings {
  host: string;
  port: number;
  /** starttls: upgrade required (refused if the server cannot); implicit: TLS from the first byte (465). */
  tls: SmtpTls;
  user?: string | undefined;
  password?: string | undefined;
  /** `"VaultPay" <no-reply@bank.example>` */
  from: string;
  /** PEM file of a private CA to trust for the SMTP server's certificate (system CAs otherwise). */
  caFile?: string | undefined;
  timeoutMs: number;
  retry: RetryPolicy;
}

/** SMTP replies 5xx mean the server refused this message for good; 4xx and socket errors may pass later. */
function smtpFailure(error: unknown): DeliveryError {
  const { responseCode, code } = error as { responseCode?: number; code?: string };
  const permanent = typeof responseCode === "number" && responseCode >= 500 && responseCode < 600;
  const reason = responseCode ? `SMTP ${responseCode}` : (code ?? "connection failed");
  return new DeliveryError("email", reason, !permanent);
}

export function createSmtpNotifier(settings: SmtpSettings, logger: Logger): Notifier & { close(): void } {
  const transport = nodemailer.createTransport({
    host: settings.host,
    port: settings.port,
    secure: settings.tls === "implicit",
    requireTLS: settings.tls === "starttls",
    ignoreTLS: settings.tls === "none",
    auth: settings.user ? { user: settings.user, pass: settings.password ?? "" } : undefined,
    tls: { minVersion: "TLSv1.2", ...(settings.caFile ? { ca: readFileSync(settings.caFile, "utf8") } : {}) },
    connectionTimeout: settings.timeoutMs,
    greetingTimeout: settings.timeoutMs,
    socketTimeout: settings.timeoutMs,
    // A pool keeps one authenticated TLS session warm instead of a handshake per OTP.
    pool: true,
    maxConnections: 3,
    logger: false,
  });
  return {
    async send(message: OutgoingMessage) {
      await withRetries(settings.retry, async () => {
        try {
          await transport.sendMail({ from: settings.from, to: message.to, subject: message.subject ?? "VaultPay", text: message.body });
        } catch (error) {
          const failure = smtpFailure(error);
          logger.warn({ channel: "email", reason: failure.message, transient: failure.transient }, "email not sent");
          throw failure;
        }
      });
    },
    close: () => transport.close(),
  };
}

export interface SmsSettings {
  /** The provider's HTTPS endpoint that accepts `{ id, to, text }` as JSON. */
  url: string;
  /** HMAC-SHA256 key shared with the provider: it checks every body came from us. */
  signingSecret: string;
  timeoutMs: number;
  retry: RetryPolicy;
}

export const SMS_SIGNATURE_HEADER = "x-vaultpay-signature";

/**
 * `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` — the time is signed with the body so a
 * captured request cannot be replayed later (the provider refuses old times), as Stripe's webhooks do.
 */
export function signSmsBody(secret: string, body: string, nowMs = Date.now()): string {
  const seconds = Math.floor(nowMs / 1000);
  const mac = createHmac("sha256", secret).update(`${seconds}.${body}`).digest("hex");
  return `t=${seconds},v1=${mac}`;
}

/**
 * Posts each SMS to the provider. The same message id goes with every attempt, so a provider that
 * de-duplicates sends one SMS even when our timeout fired after it had accepted the first.
 */
export function createSmsNotifier(settings: SmsSettings, logger: Logger): Notifier {
  return {
    async send(message: OutgoingMessage) {
      const body = JSON.stringify({ id: randomUUID(), to: message.to, text: message.body });
      await withRetries(settings.retry, async () => {
        let response: Response;
        try {
          response = await fetch(settings.url, {
            method: "POST",
            headers: { "content-type": "application/json", [SMS_SIGNATURE_HEADER]: signSmsBody(settings.signingSecret, body) },
            body,
            signal: AbortSignal.timeout(settings.timeoutMs),
          });
          await response.arrayBuffer();
        } catch (error) {
          const reason = (error as Error).name === "TimeoutError" ? `no answer in ${settings.timeoutMs} ms` : "connection failed";
          logger.warn({ channel: "sms", reason }, "sms not sent");
          throw new DeliveryError("sms", reason, true);
        }
        if (response.ok) return;
        // 429 and 5xx may pass later; any other 4xx is about this request and will not.
        const transient = response.status === 429 || response.status >= 500;
        logger.warn({ channel: "sms", status: response.status, transient }, "sms refused by the provider");
        throw new DeliveryError("sms", `provider answered ${response.status}`, transient);
      });
    },
  };
}

/** Sends each message through the notifier of its channel; a channel without one is a bug. */
export function routeByChannel(byChannel: Partial<Record<string, Notifier>>): Notifier & { has(channel: string): boolean } {
  return {
    has: (channel) => byChannel[channel] !== undefined,
    async send(message) {
      const notifier = byChannel[message.channel];
      if (!notifier) throw new DeliveryError(message.channel, "no sender configured for this channel", false);
      await notifier.send(message);
    },
  };
}

/** Outside production: every message also lands in the dev mailbox, whatever else sends it. */
export function alsoTo(first: Notifier, second: Notifier | undefined): Notifier {
  if (!second) return first;
  return {
    async send(message) {
      await first.send(message);
      await second.send(message);
    },
  };
}
