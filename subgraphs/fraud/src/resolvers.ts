import type { GraphQLResolverMap } from "@apollo/subgraph";
import DataLoader from "dataloader";
import { DateTimeScalar } from "@vaultpay/kit";
import type { serviceStatus } from "@vaultpay/service";
import type { Db } from "./db.ts";
import { assertAdmin, checksPageSize, maySeeCheck, reasonsFor } from "./fraud.ts";
import type { FraudContext } from "./runtime.ts";
import { findChecks, listChecks, type StoredCheck } from "./store.ts";

/** A batcher of checks by transfer id for one GraphQL request. */
export function checkLoader(db: Db): DataLoader<string, StoredCheck | undefined> {
  return new DataLoader((transferIds: readonly string[]) => findChecks(db, transferIds), { maxBatchSize: 200 });
}

type Status = ReturnType<typeof serviceStatus>;

/** A check the caller may see, else null (absent and not theirs look the same). */
async function visibleCheck(context: FraudContext, transferId: string): Promise<StoredCheck | null> {
  if (!context.caller) return null;
  const check = await context.checks.load(transferId);
  return check && maySeeCheck(context.caller, check) ? check : null;
}

/** Thin: parse input, call the domain, map errors. */
export function createResolvers(deps: { db: Db; status: Status }): GraphQLResolverMap<FraudContext> {
  const { db } = deps;
  return {
    DateTime: DateTimeScalar,
    Query: {
      fraudChecks: async (_parent: unknown, args: { onlyFailed?: boolean | null; first?: number | null }, context: FraudContext) => {
        assertAdmin(context.caller);
        return listChecks(db, { onlyFailed: args.onlyFailed ?? false, limit: checksPageSize(args.first ?? 50) });
      },
      fraudStatus: deps.status,
    },
    FraudCheck: {
      __resolveReference: (reference: { transferId: string }, context: FraudContext) => visibleCheck(context, reference.transferId),
      reasons: (check: StoredCheck, _args: unknown, context: FraudContext) => reasonsFor(context.caller, check),
    },
    Transfer: {
      __resolveReference: (reference: { id: string }) => reference,
      fraudCheck: (transfer: { id: string }, _args: unknown, context: FraudContext) => visibleCheck(context, transfer.id),
    },
  };
}
