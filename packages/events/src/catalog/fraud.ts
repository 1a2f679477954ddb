import { z } from "zod";
import { currencyCode, positiveMinorUnits } from "./accounts.ts";
import { TEXT_LIMITS, boundedText, defineEvent, id } from "./define.ts";

/**
 * The fraud check inside the transfer saga (stream FRAUD): the transactions service asks once the
 * source is debited, the fraud service answers with its verdict. A passed verdict is credited by
 * accounts directly (to the destination its debit command named); a failed one, transactions unwinds.
 */
export const fraudEvents = {
  "fraud.check.requested": defineEvent(
    1,
    z.object({
      transferId: id,
      userId: id,
      fromAccountId: id,
      toAccountId: id,
      amountMinor: positiveMinorUnits,
      currency: currencyCode,
      /**
       * The device the transfer request came from: with deviceProven, the DPoP key the gateway
       * verified a proof of ("jkt:<thumbprint>"); without, the x-device-id the client claimed (if
       * any), which proves nothing.
       */
      requestDeviceId: z.string().max(128).nullable(),
      /** Whether requestDeviceId was proven (DPoP). Absent in requests from before: unproven. */
      deviceProven: z.boolean().default(false),
      /** The device bound to the session of the access token that initiated the transfer. */
      sessionDeviceId: z.string().max(128),
      initiatedAt: z.iso.datetime({ offset: true }),
    }),
  ),
  "fraud.check.completed": defineEvent(
    1,
    z.object({
      transferId: id,
      passed: z.boolean(),
      riskScore: z.number().int().min(0).max(100),
      /** One line per rule that fired, with its figures (for operators and the audit); empty when none did. */
      reasons: z.array(boundedText(TEXT_LIMITS.ruleReasonChars)).max(TEXT_LIMITS.ruleReasons),
      /**
       * The same rules in plain words without thresholds or figures: what the transfer's owner is
       * told. Absent in verdicts emitted before it existed.
       */
      customerReasons: z.array(boundedText(TEXT_LIMITS.ruleReasonChars)).max(TEXT_LIMITS.ruleReasons).optional(),
      checkedAt: z.iso.datetime({ offset: true }),
    }),
  ),
} as const;
