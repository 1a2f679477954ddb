import type { GraphQLResolverMap } from "@apollo/subgraph";
import { DateTimeScalar, DomainError, type Caller } from "@vaultpay/kit";
import { MinorUnitsScalar } from "@vaultpay/money";
import { serviceStatus } from "@vaultpay/service";
import { maskAccountNumber, type Account, type AccountType, type Reader } from "./accounts.ts";
import type { AccountsService } from "./service.ts";
import type { Runtime } from "./runtime.ts";

export interface Context {
  caller: Caller | undefined;
}

function reader(context: Context): Reader {
  if (!context.caller) throw new DomainError("UNAUTHENTICATED", "Sign in first");
  return context.caller;
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
      openAccount: (_: unknown, args: { type: AccountType; currency: string }, context: Context) => accounts.open(reader(context), args.type, args.currency),
      depositFunds: (_: unknown, args: { accountId: string; amountMinor: bigint; idempotencyKey: string }, context: Context) =>
        accounts.deposit(reader(context), args),
    },
    Account: {
      // Reached through other subgraphs' fields (e.g. Transfer.fromAccount): the same visibility rule.
      __resolveReference: (reference: { id: string }, context: Context) => accounts.get(reader(context), reference.id),
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
