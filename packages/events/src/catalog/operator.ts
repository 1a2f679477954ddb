import { z } from "zod";
import { defineEvent, id } from "./define.ts";

/** Most dead letters one replay names (the audit subgraph's page bound). */
export const REPLAY_MAX_DEAD_LETTERS = 500;

/**
 * What operators do to the platform itself (stream OPERATOR), so it lands in the audit chain like
 * every other event. The actor is the ADMIN who asked.
 */
export const operatorEvents = {
  /**
   * Written before the replay (write-ahead): JetStream and PostgreSQL cannot commit together, and
   * a replay nobody can find in the audit log is worse than a record of one that a crash cut short
   * (those letters stay in DLQ, visible and replayable). Names the letters, never their payloads.
   */
  "operator.dlq.replay.requested": defineEvent(
    1,
    z.object({
      /** The consumer the operator chose, or null for all. */
      consumer: z.string().max(64).nullable(),
      deadLetters: z
        .array(
          z.object({
            dlqSeq: z.number().int().positive(),
            consumer: z.string().max(64),
            stream: z.string().max(32),
            subject: z.string().max(200),
            eventId: id.nullable(),
            eventType: z.string().max(100).nullable(),
          }),
        )
        .min(1)
        .max(REPLAY_MAX_DEAD_LETTERS),
    }),
  ),
} as const;
