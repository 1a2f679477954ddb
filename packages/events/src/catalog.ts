import { z } from "zod";

/**
 * Every event type with its version and data schema: the one contract both the emitting and the
 * consuming service validate against. The subject of an event is its type.
 * Secrets never appear here: no passwords, OTPs, tokens, plaintext account numbers or phones.
 */
function defineEvent<V extends number, S extends z.ZodType>(version: V, data: S) {
  return { version, data };
}

const id = z.string().min(1).max(64);

export const catalog = {
  "auth.user.created": defineEvent(1, z.object({ userId: id, role: z.enum(["CUSTOMER", "ADMIN"]) })),
  "account.created": defineEvent(
    1,
    z.object({
      accountId: id,
      userId: id,
      type: z.enum(["SAVINGS", "CURRENT"]),
      currency: z.string().length(3),
      maskedNumber: z.string().max(32),
    }),
  ),
  "gateway.request": defineEvent(
    1,
    z.object({
      operationName: z.string().max(200).nullable(),
      operationType: z.enum(["query", "mutation", "subscription"]).nullable(),
      outcome: z.enum(["success", "error"]),
      errorCodes: z.array(z.string().max(64)).max(50),
      durationMs: z.number().int().nonnegative(),
    }),
  ),
} as const;

export type Catalog = typeof catalog;
export type EventType = keyof Catalog;
export type EventData<T extends EventType> = z.infer<Catalog[T]["data"]>;
