import { runSubgraphService, type SubgraphConfig } from "@vaultpay/service";
import { createDb, type Db, type Tx } from "./db.ts";
import { startAuditConsumers } from "./events.ts";
import { createResolvers } from "./resolvers.ts";
import type { AuditContext } from "./runtime.ts";
import { chainHeadSeq } from "./store.ts";

await runSubgraphService<Db, Tx, SubgraphConfig, AuditContext>({
  name: "audit",
  schemaUrl: new URL("./schema.graphql", import.meta.url),
  createDb,
  wire: async (runtime) => {
    await startAuditConsumers(runtime);
    runtime.metrics.gauge("vaultpay_audit_chain_head_seq", "Sequence number of the last audit record (the chain's head)", [], async () => {
      return [{ labels: {}, value: await chainHeadSeq(runtime.db) }];
    });
    return createResolvers(runtime);
  },
  context: async ({ caller }) => ({ caller }),
});
