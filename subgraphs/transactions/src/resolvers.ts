import type { GraphQLResolverMap } from "@apollo/subgraph";
import { DateTimeScalar, currentContext, provenDeviceId, requireCaller, type Caller } from "@vaultpay/kit";
import { MinorUnitsScalar } from "@vaultpay/money";
import { serviceStatus } from "@vaultpay/service";
import type { Runtime, TransactionsContext } from "./runtime.ts";
import type { TransferRecord, TransferService } from "./service.ts";
import { reasonSeenAs, sourceAccountIdSeenAs, type TransferDirection } from "./transfers.ts";

function signedIn(context: TransactionsContext): Caller {
  return requireCaller(context.caller);
}

/** Thin: parse input, call the service, shape the result. */
export function createResolvers(runtime: Runtime, transfers: TransferService): GraphQLResolverMap<TransactionsContext> {
  return {
    DateTime: DateTimeScalar,
    MinorUnits: MinorUnitsScalar,
    Query: {
      transactionsStatus: serviceStatus(runtime, "transactions"),
      transfer: (_: unknown, args: { id: string }, context: TransactionsContext) => transfers.get(signedIn(context), args.id),
      myTransfers: (
        _: unknown,
        args: { first?: number | null; after?: string | null; directions?: TransferDirection[] | null },
        context: TransactionsContext,
      ) => transfers.listMine(signedIn(context), args.first, args.after, args.directions),
    },
    Mutation: {
      initiateTransfer: (
        _: unknown,
        args: { fromAccountId: string; toAccountNumber: string; amountMinor: bigint; idempotencyKey: string; note?: string | null },
        context: TransactionsContext,
      ) => {
        const requestContext = currentContext();
        // Proven only by the gateway's signed word (kit checked it); never by the x-device-id header.
        const provenKey = requestContext?.provenDeviceKey;
        const device = provenKey ? { id: provenDeviceId(provenKey), proven: true } : { id: requestContext?.actor.deviceId, proven: false };
        return transfers.initiate(signedIn(context), args, device, requestContext?.correlationId ?? "");
      },
    },
    Transfer: {
      __resolveReference: (reference: { id: string }, context: TransactionsContext) => transfers.get(signedIn(context), reference.id),
      amount: (transfer: TransferRecord) => ({ minor: transfer.amountMinor, currency: transfer.currency }),
      fromAccount: (transfer: TransferRecord) => ({
        __typename: "Account",
        id: sourceAccountIdSeenAs(transfer.direction, transfer.fromAccountId),
      }),
      statusHistory: async (transfer: TransferRecord, _args: unknown, context: TransactionsContext) =>
        (transfer.history ?? (await context.histories.load(transfer.id))).map((change) => ({
          status: change.status,
          reason: reasonSeenAs(transfer.direction, change.reason),
          at: change.changedAt,
        })),
    },
  };
}
