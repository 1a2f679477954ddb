import { z } from "zod";
import { defineEvent, id } from "./define.ts";

/** Events of the auth service (stream AUTH). */
export const authEvents = {
  "auth.user.created": defineEvent(1, z.object({ userId: id, role: z.enum(["CUSTOMER", "ADMIN"]) })),
} as const;
