import type { GraphQLResolverMap } from "@apollo/subgraph";
import { serviceStatus } from "@vaultpay/service";
import type { Runtime } from "./main.ts";

/** Thin: parse input, call the domain, map errors. */
export function createResolvers(runtime: Runtime): GraphQLResolverMap<object> {
  return {
    Query: {
      accountsStatus: serviceStatus(runtime, "accounts"),
    },
    Account: {
      __resolveReference: (reference: { id: string }) => reference,
    },
  };
}
