import { z } from "zod";
import { defineEvent, id } from "./define.ts";

/** Events of the accounts service (stream ACCOUNTS). */
export const accountEvents = {
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
} as const;
