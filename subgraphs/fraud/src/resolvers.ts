import type { GraphQLResolverMap } from "@apollo/subgraph";
import { DateTimeScalar, type Caller } from "@vaultpay/kit";
import { serviceStatus } from "@vaultpay/service";
import type { Db } from "./db.ts";
import { assertAdmin, checksPageSize, maySeeCheck, reasonsFor } from "./fraud.ts";
import { findCheck, listChecks, type StoredCheck } from "./store.ts";

export interface FraudContext {
  caller: Caller | undefined;
}

type Status = ReturnType<typeof serviceStatus>;

/** A check the caller may see, else null (absent and not theirs look the same). */
async function visibleCheck(db: Db, caller: Caller | undefined, transferId: string): Promise<StoredCheck | null> {
  if (!caller) return null;
  const check = await findCheck(db, transferId);
  return check && maySeeCheck(caller, check) ? check : null;
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
      __resolveReference: (reference: { transferId: string }, context: FraudContext) => visibleCheck(db, context.caller, reference.transferId),
      reasons: (check: StoredCheck, _args: unknown, context: FraudContext) => reasonsFor(context.caller, check),
    },
    Transfer: {
      __resolveReference: (reference: { id: string }) => reference,
      fraudCheck: (transfer: { id: string }, _args: unknown, context: FraudContext) => visibleCheck(db, context.caller, transfer.id),
    },
  };
}
