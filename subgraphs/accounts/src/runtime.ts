import type { ServiceRuntime } from "@vaultpay/service";
import type { AccountsConfig } from "./config.ts";
import type { Db, Tx } from "./db.ts";

export type Runtime = ServiceRuntime<Db, Tx, AccountsConfig>;
