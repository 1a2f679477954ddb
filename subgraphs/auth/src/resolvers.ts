import type { GraphQLResolverMap } from "@apollo/subgraph";
import { DateTimeScalar, DomainError } from "@vaultpay/kit";
import type { AuthContext } from "./runtime.ts";
import type { AuthPayload, AuthService, UserRecord } from "./service.ts";
import type { DevMessage } from "./redis.ts";
import { parseEmail } from "./validation.ts";

export interface ResolverDeps {
  auth: AuthService;
  /** Absent in production: devMailbox answers FORBIDDEN. */
  mailbox: { read(to: string): Promise<DevMessage[]> } | undefined;
  status: () => Promise<unknown>;
}

/**
 * A user handed out by verifyOtp/refreshSession belongs to the caller who just proved who they
 * are, though the request itself carried no token yet: the mark lets its fields answer.
 */
const OWN_USER = Symbol("ownUser");
type UserParent = UserRecord & { [OWN_USER]?: true };

function own(payload: AuthPayload) {
  return { ...payload, user: { ...payload.user, [OWN_USER]: true as const } };
}

/** Personal fields of another user look like a user that does not exist (API.md: NOT_FOUND). */
async function visible(deps: ResolverDeps, user: UserParent, context: AuthContext): Promise<UserParent> {
  if (user[OWN_USER] || (await deps.auth.canSee(context.caller, user.id))) return user;
  throw new DomainError("NOT_FOUND", "User not found");
}

type Args = Record<string, unknown>;
const text = (args: Args, name: string): string => String(args[name] ?? "");

/** Thin: parse input, call the domain, map errors (DomainError → extensions.code in kit). */
export function createResolvers(deps: ResolverDeps): GraphQLResolverMap<AuthContext> {
  const { auth } = deps;
  return {
    DateTime: DateTimeScalar,
    Query: {
      authStatus: () => deps.status(),
      me: (_: unknown, __: Args, context: AuthContext) => auth.me(context.caller),
      users: (_: unknown, args: Args, context: AuthContext) =>
        auth.users(context.caller, { first: Number(args.first ?? 50), after: (args.after as string | null | undefined) ?? undefined }),
      devMailbox: (_: unknown, args: Args) => {
        if (!deps.mailbox) throw new DomainError("FORBIDDEN", "The dev mailbox does not exist in production");
        return deps.mailbox.read(parseEmail(text(args, "to"), "to"));
      },
    },
    Mutation: {
      register: (_: unknown, args: Args, context: AuthContext) =>
        auth.register({
          email: text(args, "email"),
          phone: text(args, "phone"),
          password: text(args, "password"),
          deviceId: text(args, "deviceId"),
          client: context.client,
        }),
      login: (_: unknown, args: Args, context: AuthContext) =>
        auth.login({
          email: text(args, "email"),
          password: text(args, "password"),
          deviceId: text(args, "deviceId"),
          client: context.client,
        }),
      verifyOtp: async (_: unknown, args: Args, context: AuthContext) =>
        own(
          await auth.verifyOtp({
            challengeId: text(args, "challengeId"),
            code: text(args, "code"),
            deviceId: text(args, "deviceId"),
            client: context.client,
          }),
        ),
      refreshSession: async (_: unknown, args: Args, context: AuthContext) =>
        own(
          await auth.refreshSession({ refreshToken: text(args, "refreshToken"), deviceId: text(args, "deviceId"), client: context.client }),
        ),
      logout: (_: unknown, __: Args, context: AuthContext) => auth.logout(context.caller),
    },
    User: {
      // Entity resolution for the gateway's query plan: the user or null; fields below enforce who sees what.
      __resolveReference: async (reference: { id: string }) => (await auth.userById(String(reference.id))) ?? null,
      email: async (user: UserParent, _: Args, context: AuthContext) => (await visible(deps, user, context)).email,
      role: async (user: UserParent, _: Args, context: AuthContext) => (await visible(deps, user, context)).role,
      maskedPhone: async (user: UserParent, _: Args, context: AuthContext) => auth.maskedPhone(await visible(deps, user, context)),
      devices: async (user: UserParent, _: Args, context: AuthContext) => auth.devices((await visible(deps, user, context)).id),
    },
  };
}
