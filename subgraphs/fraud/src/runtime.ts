/** The types resolvers and consumers share with main.ts (kept here, so nothing imports main.ts). */
import type DataLoader from "dataloader";
import type { Caller } from "@vaultpay/kit";
import type { ServiceRuntime } from "@vaultpay/service";
import type { FraudConfig } from "./config.ts";
import type { Db, Tx } from "./db.ts";
import type { StoredCheck } from "./store.ts";

export type Runtime = ServiceRuntime<Db, Tx, FraudConfig>;

export interface FraudContext {
  caller: Caller | undefined;
  /** This request's batcher of checks: a page of transfers asks for all their checks at once. */
  checks: DataLoader<string, StoredCheck | undefined>;
}
