import { z } from "zod";
import { subgraphConfigSchema } from "@vaultpay/service";

export const transactionsConfigSchema = subgraphConfigSchema.extend({
  /** Keyed hash of account numbers; the same key accounts uses, to find a destination by number. */
  BLIND_INDEX_KEY: z.string().min(1),
  /** How long a saga step may take before its command is sent again. */
  SAGA_STEP_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** Commands per step before it is given up and the debit refunded. */
  SAGA_MAX_STEP_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(4),
  /** How often overdue steps are looked for. */
  SAGA_SWEEP_INTERVAL_MS: z.coerce.number().int().min(50).max(60_000).default(1_000),
});

export type TransactionsConfig = z.infer<typeof transactionsConfigSchema>;
