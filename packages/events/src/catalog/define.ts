import { z } from "zod";

export function defineEvent<V extends number, S extends z.ZodType>(version: V, data: S) {
  return { version, data };
}

/** Ids as they travel in events. */
export const id = z.string().min(1).max(64);

/** Money in events: integer minor units as a decimal string (JSON has no 64-bit integers). */
export const minorUnits = z.string().regex(/^-?(0|[1-9][0-9]{0,18})$/, "integer minor units as a decimal string");
