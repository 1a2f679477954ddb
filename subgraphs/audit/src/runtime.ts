import type { Caller } from "@vaultpay/kit";
import type { ServiceRuntime, SubgraphConfig } from "@vaultpay/service";
import type { Db, Tx } from "./db.ts";

/** What main.ts wires the audit service with; resolvers and consumers take it from here, not from main. */
export type Runtime = ServiceRuntime<Db, Tx, SubgraphConfig>;

export interface AuditContext {
  caller: Caller | undefined;
}
