import { keyRingFrom } from "@vaultpay/crypto";
import { runSubgraphService } from "@vaultpay/service";
import { accountsConfigSchema } from "./config.ts";
import { createDb } from "./db.ts";
import { startSagaConsumers, startVerdictConsumer } from "./events.ts";
import { createResolvers } from "./resolvers.ts";
import { AccountsService } from "./service.ts";

await runSubgraphService({
  name: "accounts",
  schemaUrl: new URL("./schema.graphql", import.meta.url),
  configSchema: accountsConfigSchema,
  createDb,
  wire: async (runtime) => {
    const accounts = new AccountsService({
      db: runtime.db,
      ring: keyRingFrom(runtime.config),
      afterCommit: () => runtime.eventing.relay.kick(),
    });
    await startVerdictConsumer(runtime.eventing, runtime.logger);
    await startSagaConsumers(runtime.eventing, runtime.logger);
    return createResolvers(runtime, accounts);
  },
  context: async ({ caller }) => ({ caller }),
});
