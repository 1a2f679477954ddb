import { z } from "zod";

export function defineEvent<V extends number, S extends z.ZodType>(version: V, data: S) {
  return { version, data };
}

/** Ids as they travel in events. */
export const id = z.string().min(1).max(64);

/** Money in events: integer minor units as a decimal string (JSON has no 64-bit integers). */
export const minorUnits = z.string().regex(/^-?(0|[1-9][0-9]{0,18})$/, "integer minor units as a decimal string");

/**
 * Bounds of the free text events carry. Text built from other data (a fraud verdict's reasons, a
 * client's operation name) is cut to these where it is built, with `boundText`: an event that
 * throws on build holds up the step that emits it (issue 15: a long fraud verdict held money).
 */
export const TEXT_LIMITS = {
  /** Failure and refund reasons, as stored on the transfer and shown to its owner. */
  reasonChars: 500,
  /** One fraud rule's reason line. */
  ruleReasonChars: 300,
  /** Fraud rule reasons per verdict. */
  ruleReasons: 20,
  operationNameChars: 200,
} as const;

/** Free text with a bounded length. */
export function boundedText(maxChars: number) {
  return z.string().min(1).max(maxChars);
}

/**
 * `text` cut to at most `maxChars` UTF-16 units (what zod's `max` counts), ending in "…" when cut,
 * never splitting a surrogate pair.
 */
export function boundText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  let end = maxChars - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}
