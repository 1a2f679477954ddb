import { z } from "zod";
import { TEXT_LIMITS, defineEvent } from "./define.ts";

/** Events of the gateway (stream GATEWAY): one per operation. */
export const gatewayEvents = {
  "gateway.request": defineEvent(
    1,
    z.object({
      operationName: z.string().max(TEXT_LIMITS.operationNameChars).nullable(),
      operationType: z.enum(["query", "mutation", "subscription"]).nullable(),
      outcome: z.enum(["success", "error"]),
      errorCodes: z.array(z.string().max(64)).max(50),
      durationMs: z.number().int().nonnegative(),
    }),
  ),
} as const;
