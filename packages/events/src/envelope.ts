import { z } from "zod";
import { v7 as uuidv7 } from "uuid";
import { currentContext, pooledRandomBytes, type RequestContext } from "@vaultpay/kit";
import { traceparentOf } from "@vaultpay/telemetry";
import { catalog, type EventData, type EventType } from "./catalog.ts";
import { envelopeSchema } from "./envelope-schema.ts";

export { actorSchema, envelopeSchema } from "./envelope-schema.ts";

/**
 * Event ids take their random bytes from kit's pool (pooledRandomBytes): uuid's own v7 calls into
 * the CSPRNG once per id, ~2 % of the gateway's and transactions' CPU (an event per request,
 * several per transfer).
 */
/** The last id's time and 31-bit sequence: ids from one process stay in order, as uuid's v7 keeps them. */
const idClock = { msecs: Number.NEGATIVE_INFINITY, seq: 0 };

/** A uuid v7 as `uuid` makes it (same layout and ordering rule), from pooled randomness. */
export function eventId(): string {
  const random = pooledRandomBytes(16);
  const now = Date.now();
  if (now > idClock.msecs) {
    idClock.msecs = now;
    idClock.seq = ((random[6]! & 0x7f) << 24) | (random[7]! << 16) | (random[8]! << 8) | random[9]!;
  } else {
    idClock.seq = (idClock.seq + 1) | 0;
    if (idClock.seq === 0) idClock.msecs++;
  }
  return uuidv7({ random, msecs: idClock.msecs, seq: idClock.seq });
}

export type Envelope = z.infer<typeof envelopeSchema>;

export type Event<T extends EventType = EventType> = T extends EventType
  ? Omit<Envelope, "type" | "data"> & { type: T; data: EventData<T> }
  : never;

/**
 * A fraud verdict that let its transfer through, which accounts credits; a failed one is
 * transactions' to unwind. Both consumers pick their verdicts by this one rule.
 */
export function isPassedVerdict(event: Event): event is Event<"fraud.check.completed"> {
  return event.type === "fraud.check.completed" && event.data.passed;
}

export class InvalidEventError extends Error {
  override name = "InvalidEventError";
}

/**
 * Builds an event of a catalogued type. Correlation, causation and actor come from the current
 * request or event context, so they follow a transfer end to end without being passed by hand.
 */
export function createEvent<T extends EventType>(
  type: T,
  data: EventData<T>,
  context: RequestContext | undefined = currentContext(),
): Event<T> {
  const definition = catalog[type];
  const parsed = definition.data.safeParse(data);
  if (!parsed.success) throw new InvalidEventError(`${type}: ${z.prettifyError(parsed.error)}`);
  const id = eventId();
  const traceparent = traceparentOf();
  return {
    id,
    type,
    version: definition.version,
    occurredAt: new Date().toISOString(),
    correlationId: context?.correlationId ?? id,
    causationId: context?.causationId ?? null,
    actor: context?.actor ? stripUndefined(context.actor) : {},
    data: parsed.data,
    ...(traceparent ? { traceparent } : {}),
  } as Event<T>;
}

/** Validates a received event: the envelope, then the data against its type's schema. */
export function parseEvent(raw: unknown): Event {
  const envelope = envelopeSchema.safeParse(raw);
  if (!envelope.success) throw new InvalidEventError(`bad envelope: ${z.prettifyError(envelope.error)}`);
  const type = envelope.data.type;
  if (!Object.hasOwn(catalog, type)) throw new InvalidEventError(`unknown event type ${type}`);
  const definition = catalog[type as EventType];
  if (envelope.data.version !== definition.version) {
    throw new InvalidEventError(`${type}: unsupported version ${envelope.data.version}`);
  }
  const data = definition.data.safeParse(envelope.data.data);
  if (!data.success) throw new InvalidEventError(`${type}: ${z.prettifyError(data.error)}`);
  return { ...envelope.data, data: data.data } as Event;
}

/**
 * The events a message stands for: the requests inside a gateway.request.batch (validated with it),
 * else the event itself. What audit records; a batch is transport, never a record.
 */
export function unbatch(event: Event): Event[] {
  return event.type === "gateway.request.batch" ? (event.data.requests as Event[]) : [event];
}

function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
