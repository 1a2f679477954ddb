import type { z } from "zod";
import { keyRingEnvSchema } from "@vaultpay/crypto";
import { subgraphConfigSchema } from "@vaultpay/service";

/** The subgraph settings plus the key ring that seals account numbers. */
export const accountsConfigSchema = subgraphConfigSchema.extend(keyRingEnvSchema.shape);

export type AccountsConfig = z.infer<typeof accountsConfigSchema>;
