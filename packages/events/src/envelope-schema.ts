/**
 * The envelope's schema on its own, without the catalog: the catalog's batch event
 * (gateway.request.batch) carries whole envelopes, so it needs this without a cycle.
 */
import { z } from "zod";
import { TRACEPARENT_PATTERN } from "@vaultpay/telemetry";

export const actorSchema = z.object({
  userId: z.string().optional(),
  deviceId: z.string().optional(),
  ip: z.string().optional(),
});

/** The envelope every event travels in (shared/ARCHITECTURE.md §3). */
export const envelopeSchema = z.object({
  id: z.uuid(),
  type: z.string().min(1).max(100),
  version: z.number().int().positive(),
  occurredAt: z.iso.datetime({ offset: true }),
  correlationId: z.string().min(1).max(128),
  causationId: z.string().max(128).nullable(),
  actor: actorSchema,
  data: z.unknown(),
  /**
   * The W3C trace context of the span that emitted the event, when that process traces: the outbox
   * relay publishes later, outside that span, and links its publish (and so every consumer) to it.
   * Optional and additive: events without it are valid, and older consumers ignore it. A malformed
   * one is dropped, not refused: tracing must never send an event to the DLQ.
   */
  traceparent: z.string().regex(TRACEPARENT_PATTERN).optional().catch(undefined),
});
