import type http from "node:http";
import { ApolloServer, type BaseContext } from "@apollo/server";
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginInlineTraceDisabled,
  ApolloServerPluginLandingPageDisabled,
} from "@apollo/server/plugin/disabled";
import { buildSubgraphSchema } from "@apollo/subgraph";
import type { GraphQLResolverMap } from "@apollo/subgraph";
import { gql } from "graphql-tag";
import type { Logger } from "pino";
import { SpanKind, TRACEPARENT, withSpan } from "@vaultpay/telemetry";
import { GraphQLError } from "graphql";
import { GATEWAY_ASSERTION_HEADER, verifyGatewayAssertion, verifyLiveSession, type Caller, type TokenVerifier } from "./auth.ts";
import { PROVEN_DEVICE_KEY_HEADER, isJkt, proofRequired } from "./dpop.ts";
import { correlationIdFrom, runWithContext, type RequestContext } from "./context.ts";
import { DomainError, createErrorFormatter } from "./errors.ts";
import { closeServer, createHttpServer, listen } from "./http.ts";
import type { Lifecycle } from "./lifecycle.ts";
import { metricsPlugin, type Metrics } from "./metrics.ts";

export interface SubgraphOptions<C extends BaseContext> {
  name: string;
  /** The subgraph's SDL (Federation 2, with @link). */
  typeDefs: string;
  resolvers: GraphQLResolverMap<C>;
  logger: Logger;
  lifecycle: Lifecycle;
  port: number;
  host: string;
  /** Introspection and "Did you mean …?" hints (kit/config.ts introspectionEnabled). */
  introspection: boolean;
  /**
   * Zero trust: every GraphQL request must carry a fresh gateway assertion signed with this secret,
   * and its bearer token is verified here again; `caller` is undefined for anonymous requests.
   */
  security: {
    gatewaySecret: string;
    verifyToken: TokenVerifier;
    /** Whether a session was revoked (logout, refresh-token reuse) although its tokens have not expired. */
    isSessionRevoked: (sessionId: string) => Promise<boolean>;
    /**
     * Records an accepted assertion's nonce (Redis SET NX EX, assertionNonceKey); false when it was
     * recorded before: the assertion is a replay. Throws when the store is unreachable (refused).
     */
    claimAssertionNonce: (nonce: string) => Promise<boolean>;
  };
  /** Per-request context from the request, its correlation context and the verified caller. */
  context: (request: http.IncomingMessage, requestContext: RequestContext, caller: Caller | undefined) => Promise<C>;
  ready: () => Promise<boolean>;
  /** Names this process on its health endpoints (VAULTPAY_INSTANCE_ID, set by the local stack). */
  instanceId?: string | undefined;
  routes?: Record<string, () => Promise<unknown>>;
  /** Request metrics and GET /metrics (subgraphs listen where only the gateway and Prometheus reach). */
  metrics?: Metrics;
}

function header(request: http.IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function requestContextOf(request: http.IncomingMessage): RequestContext {
  return {
    correlationId: correlationIdFrom(header(request, "x-correlation-id")),
    actor: { deviceId: header(request, "x-device-id"), ip: header(request, "x-forwarded-for") ?? request.socket.remoteAddress },
  };
}

function unauthenticated(message: string, details: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { ...details, code: "UNAUTHENTICATED", http: { status: 401 } } });
}

/** Refuses what did not come through the gateway, then verifies the caller's token itself. */
async function authenticate(
  security: SubgraphOptions<BaseContext>["security"],
  request: http.IncomingMessage,
  requestContext: RequestContext,
  rawBody: string,
): Promise<Caller | undefined> {
  const provenKeyHeader = header(request, PROVEN_DEVICE_KEY_HEADER);
  const provenDeviceKey = isJkt(provenKeyHeader) ? provenKeyHeader : undefined;
  if (provenKeyHeader !== undefined && !provenDeviceKey) throw unauthenticated("Requests must come through the gateway");
  // The proven key and the body are covered by the assertion: no one but the gateway can vouch for
  // a device, and a captured assertion cannot carry another query.
  const asserted = { correlationId: requestContext.correlationId, body: rawBody, provenDeviceKey };
  const nonce = verifyGatewayAssertion(security.gatewaySecret, header(request, GATEWAY_ASSERTION_HEADER), asserted);
  if (!nonce) throw unauthenticated("Requests must come through the gateway");
  // Once only: the same assertion with the same body, captured inside the network, is refused too.
  // Claimed alongside the token's checks, so a request waits for one Redis round trip, not two.
  const [fresh, caller] = await Promise.all([security.claimAssertionNonce(nonce), verifyCaller(security, request, provenDeviceKey)]);
  if (!fresh) throw unauthenticated("Requests must come through the gateway");
  requestContext.provenDeviceKey = provenDeviceKey;
  // Events emitted for this request name the verified user, not a header's claim.
  if (caller) requestContext.actor.userId = caller.userId;
  return caller;
}

/** The caller of a bearer token, verified here again (zero trust), or UNAUTHENTICATED. */
async function verifyCaller(
  security: SubgraphOptions<BaseContext>["security"],
  request: http.IncomingMessage,
  provenDeviceKey: string | undefined,
): Promise<Caller | undefined> {
  try {
    const caller = await verifyLiveSession(header(request, "authorization"), security);
    // Zero trust here too: a device-bound token needs the gateway's word that its key was proven.
    if (caller?.boundDeviceKey && caller.boundDeviceKey !== provenDeviceKey) throw proofRequired();
    return caller;
  } catch (error) {
    if (error instanceof DomainError) throw unauthenticated(error.message, error.details);
    throw error;
  }
}

/**
 * Starts a subgraph: Apollo Server on a federated schema, /healthz and /readyz, correlation context
 * for every request, and a shutdown step that drains HTTP before the rest closes.
 */
export async function startSubgraph<C extends BaseContext>(options: SubgraphOptions<C>): Promise<{ server: http.Server; url: string }> {
  const { logger, lifecycle } = options;
  const apollo = new ApolloServer<C>({
    schema: buildSubgraphSchema([{ typeDefs: gql(options.typeDefs), resolvers: options.resolvers as GraphQLResolverMap<unknown> }]),
    // Subgraphs sit behind the gateway; their own landing page and introspection are not for clients.
    // No Apollo Studio: federated traces would only cost bytes on every subgraph response.
    // No cache hints: nothing here sets one, and the plugin that computes them wraps every field's
    // resolver with a hook of its own. The gateway still answers clients `cache-control: no-store`
    // (a subgraph response without the header counts as max-age 0 there).
    plugins: [
      ApolloServerPluginLandingPageDisabled(),
      ApolloServerPluginInlineTraceDisabled(),
      ApolloServerPluginCacheControlDisabled(),
      ...(options.metrics ? [metricsPlugin<C>(options.metrics)] : []),
    ],
    introspection: options.introspection,
    // Subgraph errors reach clients through the gateway: no schema hints where introspection is off.
    hideSchemaDetailsFromClientErrors: !options.introspection,
    formatError: createErrorFormatter(logger, { hideSchemaDetails: !options.introspection }),
    includeStacktraceInErrorResponses: false,
  });
  await apollo.start();
  const contexts = new WeakMap<http.IncomingMessage, RequestContext>();
  const server = createHttpServer<C>({
    logger,
    ready: options.ready,
    instanceId: options.instanceId,
    routes: options.routes,
    metrics: options.metrics ? { registry: options.metrics.registry } : undefined,
    graphql: {
      server: apollo,
      around: (request, run) => {
        const requestContext = requestContextOf(request);
        contexts.set(request, requestContext);
        // A child of the gateway's fetch when it sent its traceparent (the whole request, body
        // read to answer written); events this request emits carry this span's context.
        const attributes = { "vaultpay.correlation_id": requestContext.correlationId };
        return withSpan(
          `${options.name} graphql`,
          { kind: SpanKind.SERVER, parent: header(request, TRACEPARENT) ?? null, attributes },
          () => runWithContext(requestContext, run),
        );
      },
      context: async (request, rawBody) => {
        const requestContext = contexts.get(request) ?? requestContextOf(request);
        // One line per request reaching a subgraph: how a gateway-side refusal is proven to stop here.
        logger.debug("subgraph request");
        const caller = await authenticate(options.security, request, requestContext, rawBody);
        return options.context(request, requestContext, caller);
      },
    },
  });
  await listen(server, options.port, options.host);
  lifecycle.onShutdown(`${options.name} http`, async () => {
    await closeServer(server);
    await apollo.stop();
  });
  const url = `http://${options.host}:${options.port}/graphql`;
  logger.info({ url }, "subgraph listening");
  return { server, url };
}
