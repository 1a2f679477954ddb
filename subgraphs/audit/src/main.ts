import type { Caller } from "@vaultpay/kit";
import { runSubgraphService, type ServiceRuntime, type SubgraphConfig } from "@vaultpay/service";
import { createDb, type Db, type Tx } from "./db.ts";
import { startAuditConsumers } from "./events.ts";
import { createResolvers } from "./resolvers.ts";

export type Runtime = ServiceRuntime<Db, Tx, SubgraphConfig>;
export interface AuditContext {
  caller: Caller | undefined;
}

await runSubgraphService<Db, Tx, SubgraphConfig, AuditContext>({
  name: "audit",
  schemaUrl: new URL("./schema.graphql", import.meta.url),
  createDb,
  wire: async (runtime) => {
    await startAuditConsumers(runtime);
    return createResolvers(runtime);
  },
  context: async (_runtime, _request, _requestContext, caller) => ({ caller }),
});
