import { runSubgraphService, serviceStatus } from "@vaultpay/service";
import { fraudConfigSchema, rulesConfigFrom, type FraudConfig } from "./config.ts";
import { createDb, type Db, type Tx } from "./db.ts";
import { startConsumers } from "./events.ts";
import { checkLoader, createResolvers, type FraudContext } from "./resolvers.ts";

await runSubgraphService<Db, Tx, FraudConfig, FraudContext>({
  name: "fraud",
  schemaUrl: new URL("./schema.graphql", import.meta.url),
  configSchema: fraudConfigSchema,
  createDb,
  wire: async (runtime) => {
    await startConsumers(runtime.eventing, { rules: rulesConfigFrom(runtime.config), logger: runtime.logger, now: () => new Date() });
    return createResolvers({ db: runtime.db, status: serviceStatus(runtime, "fraud") });
  },
  context: async (runtime, _request, _requestContext, caller) => ({ caller, checks: checkLoader(runtime.db) }),
});
