import { runSubgraphService, serviceStatus } from "@vaultpay/service";
import { fraudConfigSchema, rulesConfigFrom } from "./config.ts";
import { createDb } from "./db.ts";
import { startConsumers } from "./events.ts";
import { checkLoader, createResolvers } from "./resolvers.ts";

await runSubgraphService({
  name: "fraud",
  schemaUrl: new URL("./schema.graphql", import.meta.url),
  configSchema: fraudConfigSchema,
  createDb,
  wire: async (runtime) => {
    const verdicts = runtime.metrics.counter(
      "vaultpay_fraud_verdicts_total",
      "Fraud verdicts by outcome (failed closed counts as failed)",
      ["passed"],
    );
    const firedRules = runtime.metrics.counter("vaultpay_fraud_rules_fired_total", "Rules that fired, by rule", ["rule"]);
    await startConsumers(runtime.eventing, {
      rules: rulesConfigFrom(runtime.config),
      logger: runtime.logger,
      now: () => new Date(),
      onVerdict: ({ passed, firedRules: rules, failedClosed }) => {
        verdicts.inc({ passed: String(passed) });
        for (const rule of failedClosed ? ["failed-closed"] : rules) firedRules.inc({ rule });
      },
    });
    return createResolvers({ db: runtime.db, status: serviceStatus(runtime, "fraud") });
  },
  context: async ({ caller, runtime }) => ({ caller, checks: checkLoader(runtime.db) }),
});
