/** The types resolvers and consumers share with main.ts (kept here, so nothing imports main.ts). */
import type { Caller } from "@vaultpay/kit";
import type { ServiceRuntime } from "@vaultpay/service";
import type { AuthConfig } from "./config.ts";
import type { Db, Tx } from "./db.ts";
import type { SignInClient } from "./service.ts";

export type Runtime = ServiceRuntime<Db, Tx, AuthConfig>;

export interface AuthContext {
  /** The verified token of the request (kit verified it), or undefined when anonymous. */
  caller: Caller | undefined;
  /** What the gateway vouched for about the client: its address and the DPoP key it proved, if any. */
  client: SignInClient;
}
