import { runSubgraphService } from "@vaultpay/service";
import { createDb } from "./db.ts";
import { startAuditConsumers } from "./events.ts";
import { createResolvers } from "./resolvers.ts";
import { chainHeadSeq } from "./store.ts";

await runSubgraphService({
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
