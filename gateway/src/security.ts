import type { ApolloServerPlugin, GraphQLRequestContext } from "@apollo/server";
import type { Redis } from "ioredis";
import {
  DomainError,
  accessTokenOf,
  currentContext,
  proofRequired,
  sessionRevocationsIn,
  toGraphQLError,
  verifyDpopProof,
  verifyLiveSession,
  type Caller,
  type TokenVerifier,
} from "@vaultpay/kit";
import { checkedVariables, resolveOperation, type DocumentLimits } from "./door.ts";
import { enforceLimits, measureOperation, type OperationLimits } from "./limits.ts";
import { CREDENTIAL_FIELDS, permissions, type GatewayContext } from "./permissions.ts";
import type { RateLimits } from "./rate-limit.ts";
import { authorizeFields, selectedFields } from "./shield.ts";

/** The per-request context of the gateway's Apollo server. */
export interface GatewayRequestContext extends GatewayContext {
  authorization?: string | undefined;
  ip: string;
  /** The request's DPoP proof and what it must name (RFC 9449 htm/htu); absent once checked. */
  dpop?: DpopRequest | undefined;
  /** The thumbprint of the key a verified proof came from; forwarded to subgraphs under the assertion. */
  provenDeviceKey?: string | undefined;
}

export interface DpopRequest {
  proof: string | undefined;
  htm: string;
  htu: string;
}

export interface SecurityOptions {
  verifyToken: TokenVerifier;
  redis: Redis;
  rateLimits: RateLimits;
  limits: OperationLimits;
  documentLimits: DocumentLimits;
}

/** DPoP proof ids seen recently (replay), in the Redis every gateway replica shares. */
export function dpopJtiKey(key: string): string {
  return `gateway:dpop-jti:${key}`;
}

/**
 * The verified caller of an access token (undefined without one), refusing revoked sessions, and
 * the device key the request proved (a DPoP proof, verified here once per request). A token bound
 * to a key (`cnf.jkt`) without a valid proof of that key is refused: a stolen token is useless
 * without the device's private key. `dpop` undefined: already checked (a subscription's payload
 * queries run with the connection's proof), `provenDeviceKey` then says what it proved.
 */
export async function authenticate(
  options: Pick<SecurityOptions, "verifyToken" | "redis">,
  authorization: string | undefined,
  dpop: DpopRequest | undefined,
  alreadyProvenKey?: string,
  /** Run while the session is checked (verifyLiveSession): the operation's rate limit. */
  alongside?: (caller: Caller | undefined) => Promise<void>,
): Promise<{ caller: Caller | undefined; provenDeviceKey: string | undefined }> {
  // The proof is checked while the session is (its signature by WebCrypto, off the event loop; its
  // jti claimed in Redis beside the session check and the rate limit): one wait, not two. What
  // the session check refuses is still the answer when both fail.
  const [session, proof] = await Promise.allSettled([
    verifyLiveSession(
      authorization,
      { verifyToken: options.verifyToken, isSessionRevoked: sessionRevocationsIn(options.redis) },
      alongside,
    ),
    dpop?.proof === undefined
      ? Promise.resolve(undefined)
      : verifyDpopProof(dpop.proof, {
          htm: dpop.htm,
          htu: dpop.htu,
          accessToken: accessTokenOf(authorization),
          rememberJti: async (key, ttlSeconds) => (await options.redis.set(dpopJtiKey(key), "1", "EX", ttlSeconds, "NX")) === "OK",
        }),
  ]);
  if (session.status === "rejected") throw session.reason;
  if (proof.status === "rejected") throw proof.reason;
  const caller = session.value;
  const provenDeviceKey = proof.value?.jkt ?? alreadyProvenKey;
  if (caller?.boundDeviceKey && caller.boundDeviceKey !== provenDeviceKey) throw proofRequired();
  return { caller, provenDeviceKey };
}

/**
 * Everything the gateway decides before any subgraph is called, in order: which operation runs
 * and with which input (door.ts: coerced variables, scalar literals, no NUL), who is calling (JWT
 * against auth's JWKS, revoked sessions in Redis), how often (Redis rate limits, stricter on
 * credential mutations), how big the operation is (depth, fields, aliases) and whether the caller
 * may select every field in it (graphql-shield rules, deny by default). A refusal here means zero
 * subgraph requests.
 */
export function securityPlugin(options: SecurityOptions): ApolloServerPlugin<GatewayRequestContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation(request: GraphQLRequestContext<GatewayRequestContext>) {
          try {
            const context = request.contextValue;
            const operation = resolveOperation(request.document!, request.request.operationName);
            // The values execution will use (defaults applied): rules must not read the raw ones.
            const variables = checkedVariables(request.schema, request.document!, operation, request.request.variables);
            if (operation.operation === "subscription") {
              throw new DomainError("BAD_USER_INPUT", "Subscriptions are served over WebSocket (graphql-ws) on this same path");
            }
            // The caller's operation is metered while their session is checked: one Redis wait.
            const verified = await authenticate(options, context.authorization, context.dpop, context.provenDeviceKey, (caller) =>
              options.rateLimits.operation(caller ? `user:${caller.userId}` : `ip:${context.ip}`),
            );
            // One proof, one check: its jti is spent, and subgraph calls rely on the result.
            context.dpop = undefined;
            context.caller = verified.caller;
            context.provenDeviceKey = verified.provenDeviceKey;
            const actor = currentContext()?.actor;
            if (actor && context.caller) actor.userId = context.caller.userId;

            // Size first: cheap to measure, and it bounds the work of everything after it.
            enforceLimits(measureOperation(request.document!, operation), options.limits);
            const fields = selectedFields(request.schema, request.document!, operation, variables);
            const credentialFields = fields.filter((field) => CREDENTIAL_FIELDS.has(`${field.typeName}.${field.fieldName}`));
            if (credentialFields.length > 0) {
              const emails = credentialFields
                .map((field) => field.args.email)
                .filter((email): email is string => typeof email === "string")
                .map((email) => `email:${email.trim().toLowerCase().slice(0, 320)}`);
              // Each credential mutation in the operation counts, so aliases cannot batch guesses.
              for (let attempt = 0; attempt < credentialFields.length; attempt++) {
                await options.rateLimits.credentialAttempt([`ip:${context.ip}`, ...new Set(emails)]);
              }
            }
            await authorizeFields({ schema: request.schema, fields, context, permissions });
          } catch (error) {
            // Anything not a client error is left to formatError, which logs it and answers INTERNAL.
            const { error: mapped, internal } = toGraphQLError(error);
            throw internal ? error : mapped;
          }
        },
      };
    },
  };
}
