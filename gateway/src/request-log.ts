import type { ApolloServerPlugin } from "@apollo/server";
import {
  GATEWAY_REQUEST_BATCH_MAX,
  TEXT_LIMITS,
  boundText,
  createEvent,
  eventHeaders,
  eventId,
  type Event,
  type JetStreamLink,
} from "@vaultpay/events";
import { currentContext, type Logger } from "@vaultpay/kit";

/** How long a read's event waits for others to share its message (bounds a read's audit lag). */
export const REQUEST_EVENT_LINGER_MS = 100;
/**
 * A batch's requests at most, in bytes of JSON: well under the streams' 1 MiB message limit. Events
 * are ~400 bytes; error codes (50 of up to 64 characters, escaped) can make one ~20 KB.
 */
export const REQUEST_BATCH_MAX_BYTES = 512 * 1024;

/**
 * Sends `gateway.request` events to JetStream. A mutation's or a subscription's goes at once, alone;
 * reads go together in `gateway.request.batch` messages, of up to GATEWAY_REQUEST_BATCH_MAX (and REQUEST_BATCH_MAX_BYTES), at most
 * `lingerMs` after the first of them: each read's own message, its storage and its delivery to audit
 * had cost audit, NATS and PostgreSQL more than the read itself (bench/gateway-results.md). Audit
 * still records every request event on its own. Events are published directly (the gateway has no
 * database): a message NATS refuses is logged with its count, and reads not yet sent when the
 * process dies uncleanly (at most `lingerMs` of them) are lost, as a single publish in flight was.
 */
export class RequestEventPublisher {
  private pending: Array<Event<"gateway.request">> = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly inFlight = new Set<Promise<void>>();

  private readonly js: JetStreamLink["js"];
  private readonly logger: Logger;
  private readonly lingerMs: number;

  constructor(js: JetStreamLink["js"], logger: Logger, lingerMs = REQUEST_EVENT_LINGER_MS) {
    this.js = js;
    this.logger = logger;
    this.lingerMs = lingerMs;
  }

  publish(event: Event<"gateway.request">): void {
    if (event.data.operationType !== "query" || this.closed) {
      this.send(event, 1);
      return;
    }
    const bytes = Buffer.byteLength(JSON.stringify(event));
    if (this.pendingBytes + bytes > REQUEST_BATCH_MAX_BYTES) this.flush();
    this.pending.push(event);
    this.pendingBytes += bytes;
    if (this.pending.length >= GATEWAY_REQUEST_BATCH_MAX) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.lingerMs);
  }

  /** Sends the reads waiting now in one message. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const requests = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    // Its own correlation id and no actor or trace: the batch belongs to no one request.
    const { traceparent: _traceparent, ...batch } = createEvent(
      "gateway.request.batch",
      { requests },
      { correlationId: eventId(), actor: {} },
    );
    this.send(batch, requests.length);
  }

  /** Sends what waits and what is in flight; later events go out one by one. For shutdown, before NATS drains. */
  async close(): Promise<void> {
    this.closed = true;
    this.flush();
    await Promise.all(this.inFlight);
  }

  private send(event: Event, requests: number): void {
    const sent = this.js.publish(event.type, JSON.stringify(event), { msgID: event.id, headers: eventHeaders(event) }).then(
      () => undefined,
      (error: unknown) => this.logger.warn({ err: error, requests }, "gateway.request event not published"),
    );
    this.inFlight.add(sent);
    void sent.finally(() => this.inFlight.delete(sent));
  }
}

/**
 * One log line and one `gateway.request` event per operation: who, which operation, outcome and
 * duration, under the request's correlation id. Variables are never logged (they hold passwords
 * and OTP codes). The events go out through the publisher (reads batched, see there).
 */
export function requestLogPlugin(logger: Logger, events: Pick<RequestEventPublisher, "publish">): ApolloServerPlugin {
  return {
    async requestDidStart() {
      const startedAt = performance.now();
      return {
        async willSendResponse({ operation, operationName, errors }) {
          const durationMs = Math.round(performance.now() - startedAt);
          // Bounded where built: the operation name is the client's, and an event that cannot be
          // built would lose the request's record.
          const errorCodes = [...new Set((errors ?? []).map((error) => boundText(String(error.extensions?.code ?? "INTERNAL"), 64)))].slice(
            0,
            50,
          );
          const data = {
            operationName: operationName ? boundText(operationName, TEXT_LIMITS.operationNameChars) : null,
            operationType: operation?.operation ?? null,
            outcome: errorCodes.length > 0 ? ("error" as const) : ("success" as const),
            errorCodes,
            durationMs,
          };
          logger.info({ ...data, actor: currentContext()?.actor }, "graphql request");
          events.publish(createEvent("gateway.request", data));
        },
      };
    },
  };
}
