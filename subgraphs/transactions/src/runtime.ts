import type { Caller } from "@vaultpay/kit";
import type { ServiceRuntime } from "@vaultpay/service";
import type { TransactionsConfig } from "./config.ts";
import type { Db, Tx } from "./db.ts";
import type { historyLoader } from "./service.ts";

/** What main.ts wires the transactions service with; resolvers take it from here, not from main. */
export type Runtime = ServiceRuntime<Db, Tx, TransactionsConfig>;

export interface TransactionsContext {
  caller: Caller | undefined;
  /** This request's batcher of status histories (a page asks for them all at once). */
  histories: ReturnType<typeof historyLoader>;
}
