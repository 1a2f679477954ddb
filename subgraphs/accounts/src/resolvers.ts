import type { GraphQLResolverMap } from "@apollo/subgraph";
import { DateTimeScalar, requireCaller, type Caller } from "@vaultpay/kit";
import { MinorUnitsScalar } from "@vaultpay/money";
import { serviceStatus } from "@vaultpay/service";
import { maskAccountNumber, type Account, type AccountType, type Reader } from "./accounts.ts";
import { MAX_BATCH_IDS, type AccountsService } from "./service.ts";
import type { Runtime } from "./runtime.ts";

export interface Context {
  caller: Caller | undefined;
}

function reader(context: Context): Reader {
  return requireCaller(context.caller);
}

/**
 * Account entities of one request are loaded in one query: the gateway asks for a page of them at
 * once (e.g. myTransfers' fromAccount), and Apollo calls __resolveReference once per entity in the
 * same tick. Keyed by the request's context, so batches never mix callers.
 */
const entityBatches = new WeakMap<Context, Map<string, Array<(result: Account | Error) => void>>>();

function loadAccountEntity(accounts: AccountsService, context: Context, id: string): Promise<Account> {
  const caller = reader(context);
  let batch = entityBatches.get(context);
  if (!batch || batch.size >= MAX_BATCH_IDS) {
    const pending = new Map<string, Array<(result: Account | Error) => void>>();
    batch = pending;
    entityBatches.set(context, pending);
    process.nextTick(() => {
      if (entityBatches.get(context) === pending) entityBatches.delete(context);
      const ids = [...pending.keys()];
      accounts.getMany(caller, ids).then(
        (results) => {
          for (const [index, key] of ids.entries()) for (const settle of pending.get(key)!) settle(results[index]!);
        },
        (error: unknown) => {
          const failure = error instanceof Error ? error : new Error(String(error));
          for (const waiters of pending.values()) for (const settle of waiters) settle(failure);
        },
      );
    });
  }
  const waiters = batch.get(id) ?? [];
  batch.set(id, waiters);
  return new Promise<Account>((resolve, reject) => {
    waiters.push((result) => (result instanceof Error ? reject(result) : resolve(result)));
  });
}

/** Thin: parse input, call the service, shape the output. */
export function createResolvers(runtime: Runtime, accounts: AccountsService): GraphQLResolverMap<Context> {
  return {
    DateTime: DateTimeScalar,
    MinorUnits: MinorUnitsScalar,
    Query: {
      accountsStatus: serviceStatus(runtime, "accounts"),
      myAccounts: (_: unknown, __: unknown, context: Context) => {
        const caller = reader(context);
        return accounts.listOf(caller, caller.userId);
      },
      account: (_: unknown, args: { id: string }, context: Context) => accounts.get(reader(context), args.id),
    },
    Mutation: {
      openAccount: (_: unknown, args: { type: AccountType; currency: string }, context: Context) =>
        accounts.open(reader(context), args.type, args.currency),
      depositFunds: (_: unknown, args: { accountId: string; amountMinor: bigint; idempotencyKey: string }, context: Context) =>
        accounts.deposit(reader(context), args),
    },
    Account: {
      // Reached through other subgraphs' fields (e.g. Transfer.fromAccount): the same visibility rule.
      __resolveReference: (reference: { id: string }, context: Context) => loadAccountEntity(accounts, context, reference.id),
      maskedNumber: (account: Account) => maskAccountNumber(account.numberLast4),
      number: (account: Account, _: unknown, context: Context) => accounts.revealNumber(reader(context), account),
      balance: (account: Account) => ({ minor: account.balanceMinor, currency: account.currency }),
      owner: (account: Account) => ({ __typename: "User", id: account.userId }),
    },
    User: {
      __resolveReference: (reference: { id: string }) => reference,
      accounts: (user: { id: string }, _: unknown, context: Context) => accounts.listOf(reader(context), user.id),
    },
  } as GraphQLResolverMap<Context>;
}
