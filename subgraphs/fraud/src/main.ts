import { runSubgraphService, type ServiceRuntime, type SubgraphConfig } from "@vaultpay/service";
import { createDb, type Db, type Tx } from "./db.ts";
import { createResolvers } from "./resolvers.ts";

export type Runtime = ServiceRuntime<Db, Tx, SubgraphConfig>;

await runSubgraphService<Db, Tx, SubgraphConfig, object>({
  name: "fraud",
  schemaUrl: new URL("./schema.graphql", import.meta.url),
  createDb,
  wire: createResolvers,
  context: async () => ({}),
});
