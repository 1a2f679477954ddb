import type { GraphQLResolverMap } from "@apollo/subgraph";
import { serviceStatus } from "@vaultpay/service";
import type { Runtime } from "./main.ts";

/** Thin: parse input, call the domain, map errors. */
export function createResolvers(runtime: Runtime): GraphQLResolverMap<object> {
  return {
    Query: {
      fraudStatus: serviceStatus(runtime, "fraud"),
    },
    FraudCheck: {
      __resolveReference: (reference: { transferId: string }) => reference,
    },
  };
}
