import { z } from "zod";
import { envelopeSchema } from "../envelope-schema.ts";
import { TEXT_LIMITS, defineEvent } from "./define.ts";

const requestData = z.object({
  operationName: z.string().max(TEXT_LIMITS.operationNameChars).nullable(),
  operationType: z.enum(["query", "mutation", "subscription"]).nullable(),
  outcome: z.enum(["success", "error"]),
  errorCodes: z.array(z.string().max(64)).max(50),
  durationMs: z.number().int().nonnegative(),
});

/** gateway.request events at most in one batch message (about 400 bytes each). */
export const GATEWAY_REQUEST_BATCH_MAX = 200;

/**
 * Events of the gateway (stream GATEWAY): one `gateway.request` per operation. Those of reads
 * travel to the stream together, in `gateway.request.batch` messages: one JetStream message, and
 * one delivery to audit, for many reads. The batch is only their transport: audit records each
 * request event inside it as its own record (unbatch), never the batch.
 */
export const gatewayEvents = {
  "gateway.request": defineEvent(1, requestData),
  "gateway.request.batch": defineEvent(
    1,
    z.object({
      requests: z
        .array(
          envelopeSchema.extend({
            type: z.literal("gateway.request"),
            // Version 1 only, typed as every envelope's version is (a number).
            version: z.number().int().min(1).max(1),
            data: requestData,
          }),
        )
        .min(1)
        .max(GATEWAY_REQUEST_BATCH_MAX),
    }),
  ),
} as const;
