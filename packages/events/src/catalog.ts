import type { z } from "zod";
import { accountEvents } from "./catalog/accounts.ts";
import { authEvents } from "./catalog/auth.ts";
import { fraudEvents } from "./catalog/fraud.ts";
import { gatewayEvents } from "./catalog/gateway.ts";
import { operatorEvents } from "./catalog/operator.ts";
import { transactionEvents } from "./catalog/transactions.ts";

/**
 * Every event type with its version and data schema: the one contract both the emitting and the
 * consuming service validate against. The subject of an event is its type. One file per domain
 * under catalog/. Secrets never appear here: no passwords, OTPs, tokens, plaintext account
 * numbers or phones.
 */
export const catalog = {
  ...authEvents,
  ...accountEvents,
  ...gatewayEvents,
  ...transactionEvents,
  ...fraudEvents,
  ...operatorEvents,
} as const;

export type Catalog = typeof catalog;
export type EventType = keyof Catalog;
export type EventData<T extends EventType> = z.infer<Catalog[T]["data"]>;
export { TEXT_LIMITS, boundText, minorUnits } from "./catalog/define.ts";
export { REPLAY_MAX_DEAD_LETTERS } from "./catalog/operator.ts";
export { GATEWAY_REQUEST_BATCH_MAX } from "./catalog/gateway.ts";
export * from "./catalog/transfer-status.ts";
