import { readFileSync } from "node:fs";
import type http from "node:http";
import { GraphQLError, type GraphQLSchema } from "graphql";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import { ApolloServerPluginLandingPageLocalDefault } from "@apollo/server/plugin/landingPage/default";
import { connectJetStream, streamLimitsOf } from "@vaultpay/events";
import {
  DPOP_HEADER,
  GATEWAY_ASSERTION_HEADER,
  Lifecycle,
  PROVEN_DEVICE_KEY_HEADER,
  createTokenVerifier,
  signGatewayAssertion,
  closeServer,
  correlationIdFrom,
  createErrorFormatter,
  createHttpServer,
  createMetrics,
  metricsPlugin,
  createLogger,
  currentContext,
  introspectionEnabled,
  listen,
  loadConfig,
  runWithContext,
  startProcessTracing,
  PUBLIC_ERROR_CODES,
  DomainError,
} from "@vaultpay/kit";
import { Redis } from "ioredis";
import { SpanKind, TRACEPARENT, traceparentOf, withSpan } from "@vaultpay/telemetry";
import { gatewayConfigSchema, graphqlHttpUrl, subgraphUrlOverride } from "./config.ts";
import { clientAddress, parseCidrList } from "./client-address.ts";
import { checkBeforeParsing } from "./door.ts";
import { RateLimits } from "./rate-limit.ts";
import { RequestEventPublisher, requestLogPlugin } from "./request-log.ts";
import { securityPlugin, type GatewayRequestContext } from "./security.ts";
import { statusFeedFromNats } from "./status-feed.ts";
import { createSubgraphFetcher } from "./subgraph-fetch.ts";
import { startSubscriptionServer } from "./subscriptions.ts";
import { webAppRoute } from "./web-app.ts";

const config = loadConfig(gatewayConfigSchema, process.env, { process: true });
const production = config.NODE_ENV === "production";
const introspection = introspectionEnabled(config);
const logger = createLogger({ service: "gateway", level: config.LOG_LEVEL });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();
startProcessTracing("gateway", config, lifecycle);
if (config.VAULTPAY_SUPERVISED) lifecycle.exitWithParent();

const trustedProxies = { hops: config.TRUSTED_PROXY_HOPS, cidrs: parseCidrList(config.TRUSTED_PROXY_CIDRS) };
const clientOf = (request: http.IncomingMessage) => clientAddress(request, trustedProxies);

const { nc, js } = await connectJetStream(config.NATS_URL, "gateway", logger, streamLimitsOf(config));
lifecycle.onShutdown("nats", () => nc.drain());
// enableOfflineQueue off: while Redis is away, limiter calls fail fast to the in-memory insurance.
// Auto-pipelining: commands of concurrent requests issued in one tick share one write; in a
// profile of the gateway benchmark, the socket writes of the rate limiters' Redis commands were
// the gateway's largest self time (writeUtf8String, ~15 %).
const redis = new Redis(config.REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1, enableAutoPipelining: true });
redis.on("error", (error) => logger.warn({ err: error }, "redis error"));
lifecycle.onShutdown("redis", () => redis.quit().then(() => undefined));

/** Forwards what subgraphs need from the client request: correlation id, device, token. */
class SubgraphDataSource extends RemoteGraphQLDataSource<GatewayRequestContext> {
  constructor(options: ConstructorParameters<typeof RemoteGraphQLDataSource<GatewayRequestContext>>[0]) {
    super(options);
    // Signed here, on the body exactly as it goes out (Apollo serializes it after willSendRequest):
    // the assertion covers it, so a header captured inside the network cannot carry another query.
    const send = this.fetcher;
    this.fetcher = (url, init) => {
      const headers = { ...(init?.headers as Record<string, string> | undefined) };
      const correlationId = headers["x-correlation-id"];
      if (correlationId) {
        const request = {
          correlationId,
          body: typeof init?.body === "string" ? init.body : "",
          provenDeviceKey: headers[PROVEN_DEVICE_KEY_HEADER],
        };
        headers[GATEWAY_ASSERTION_HEADER] = signGatewayAssertion(config.GATEWAY_SECRET, request);
      }
      // Runs inside Apollo's fetch span: the subgraph's span becomes its child.
      const traceparent = traceparentOf();
      if (traceparent) headers[TRACEPARENT] = traceparent;
      return send(url, { ...init, headers });
    };
  }

  override willSendRequest({
    request,
    context,
  }: Parameters<NonNullable<RemoteGraphQLDataSource<GatewayRequestContext>["willSendRequest"]>>[0]) {
    const requestContext = currentContext();
    if (requestContext) {
      request.http?.headers.set("x-correlation-id", requestContext.correlationId);
      // The proven device key rides under the assertion's MAC (signed in the fetcher, with the body):
      // subgraphs believe it from the gateway only.
      if (context.provenDeviceKey) request.http?.headers.set(PROVEN_DEVICE_KEY_HEADER, context.provenDeviceKey);
      if (requestContext.actor.deviceId) request.http?.headers.set("x-device-id", requestContext.actor.deviceId);
      // The client's address, for the subgraphs' logs and events (they only ever see the gateway's).
      if (requestContext.actor.ip) request.http?.headers.set("x-forwarded-for", requestContext.actor.ip);
    }
    if (context.authorization) request.http?.headers.set("authorization", context.authorization);
  }

  /**
   * A subgraph's non-2xx answer (e.g. 400 for a variable its scalar refused, 401) as the error it
   * carries when that error has a public code, instead of Apollo's generic one — which would also
   * leak the subgraph's URL and raw body to the client.
   */
  override async errorFromResponse(response: Parameters<RemoteGraphQLDataSource["errorFromResponse"]>[0]) {
    const body = (await this.parseBody(response).catch(() => undefined)) as
      | { errors?: Array<{ message?: string; extensions?: Record<string, unknown> }> }
      | undefined;
    const first = body?.errors?.[0];
    const code = first?.extensions?.code;
    if (typeof code === "string" && PUBLIC_ERROR_CODES.has(code)) {
      const { code: _code, stacktrace: _stacktrace, http: _http, ...details } = first?.extensions ?? {};
      return new GraphQLError(first?.message ?? code, { extensions: { ...details, code } });
    }
    logger.warn({ status: response.status, subgraphUrl: response.url }, "subgraph answered with an error status");
    return new GraphQLError("Internal error", { extensions: { code: "INTERNAL" } });
  }
}

let apiSchema: GraphQLSchema | undefined;
const subgraphFetcher = createSubgraphFetcher();
const gateway = new ApolloGateway({
  supergraphSdl: readFileSync(new URL("../../supergraph.graphql", import.meta.url), "utf8"),
  // undici's request on a keep-alive pool (subgraph-fetch.ts), instead of the default
  // make-fetch-happen, whose HTTP-cache and agent layers showed in the gateway's profile (~5 % of
  // its CPU) and do nothing for POSTs to subgraphs on loopback, or the WHATWG fetch over the same
  // undici (~250 µs more CPU per request).
  buildService: ({ name, url }) => new SubgraphDataSource({ url: subgraphUrlOverride(config, name) ?? url, fetcher: subgraphFetcher }),
});

const documentLimits = { maxDocumentChars: config.MAX_DOCUMENT_CHARS, maxDocumentTokens: config.MAX_DOCUMENT_TOKENS };
const limits = { maxDepth: config.MAX_QUERY_DEPTH, maxFields: config.MAX_QUERY_FIELDS, maxAliases: config.MAX_QUERY_ALIASES };
const security = {
  verifyToken: createTokenVerifier(config.AUTH_JWKS_URL),
  redis,
  rateLimits: new RateLimits(redis, {
    operationsPerWindow: config.RATE_LIMIT_OPERATIONS,
    credentialAttemptsPerWindow: config.RATE_LIMIT_CREDENTIAL_ATTEMPTS,
    requestsPerWindow: config.RATE_LIMIT_REQUESTS_PER_IP,
    windowSeconds: config.RATE_LIMIT_WINDOW_SECONDS,
  }),
  limits,
  documentLimits,
};
const metrics = createMetrics("gateway");
const requestEvents = new RequestEventPublisher(js, logger);
// Registered before Apollo's step, so it runs after it (steps stop in reverse): the last requests' reads are sent before NATS drains.
lifecycle.onShutdown("request events", () => requestEvents.close());
const apollo = new ApolloServer<GatewayRequestContext>({
  gateway,
  introspection,
  // Without introspection, "Did you mean …?" hints would let a client rebuild the schema by guessing.
  hideSchemaDetailsFromClientErrors: !introspection,
  formatError: createErrorFormatter(logger, { hideSchemaDetails: !introspection }),
  // Parsing stops past the token cap: a huge document costs at most that much lexing.
  parseOptions: { maxTokens: config.MAX_DOCUMENT_TOKENS },
  includeStacktraceInErrorResponses: false,
  plugins: [
    production ? ApolloServerPluginLandingPageDisabled() : ApolloServerPluginLandingPageLocalDefault({ embed: true }),
    securityPlugin(security),
    requestLogPlugin(logger, requestEvents),
    metricsPlugin<GatewayRequestContext>(metrics),
  ],
});
gateway.onSchemaLoadOrUpdate(({ apiSchema: schema }) => {
  apiSchema = schema;
});
await apollo.start();
lifecycle.onShutdown("apollo", () => apollo.stop());

const server = createHttpServer({
  logger,
  maxBodyBytes: config.MAX_BODY_BYTES,
  metrics: production && !config.METRICS_TOKEN ? undefined : { registry: metrics.registry, bearerToken: config.METRICS_TOKEN },
  ready: async () => !nc.isClosed(),
  instanceId: config.VAULTPAY_INSTANCE_ID,
  fallback: webAppRoute(config.WEB_APP_DIR),
  graphql: {
    server: apollo,
    around: (request, run) => {
      const header = (name: string) => {
        const value = request.headers[name];
        return Array.isArray(value) ? value[0] : value;
      };
      const correlationId = correlationIdFrom(header("x-correlation-id"));
      // Every trace starts here: a client's traceparent is not believed (anyone could join or
      // flood another's trace), the correlation id links the client's report to it instead.
      return withSpan(
        "gateway graphql",
        { kind: SpanKind.SERVER, parent: null, attributes: { "vaultpay.correlation_id": correlationId } },
        () => runWithContext({ correlationId, actor: { deviceId: header("x-device-id")?.slice(0, 128), ip: clientOf(request) } }, run),
      );
    },
    // Before Apollo parses anything: every request is metered per address (invalid ones too) and
    // the document's size and the variables' shape are capped. Refusals are logged without stacks.
    admit: async (request, operation) => {
      try {
        await security.rateLimits.request(clientOf(request));
        checkBeforeParsing(operation, documentLimits);
      } catch (error) {
        if (error instanceof DomainError) logger.info({ code: error.code, reason: error.message }, "request refused at the door");
        throw error;
      }
    },
    context: async (request) => {
      const proof = request.headers[DPOP_HEADER];
      return {
        authorization: request.headers.authorization,
        ip: clientOf(request),
        production,
        dpop: {
          proof: Array.isArray(proof) ? proof.join(",") : proof,
          htm: request.method ?? "POST",
          htu: graphqlHttpUrl(config, request),
        },
      };
    },
  },
});
const subscriptions = startSubscriptionServer({
  server,
  apollo,
  schema: () => apiSchema,
  feed: statusFeedFromNats(nc, logger, metrics),
  security,
  limits,
  production,
  introspection,
  logger,
  htuOf: (request) => graphqlHttpUrl(config, request),
  clientOf,
});
await listen(server, config.GATEWAY_PORT, config.GATEWAY_HOST);
lifecycle.onShutdown("http", () => closeServer(server));
lifecycle.onShutdown("subscriptions", () => subscriptions.stop());
const url = `http://${config.GATEWAY_HOST === "0.0.0.0" ? "127.0.0.1" : config.GATEWAY_HOST}:${config.GATEWAY_PORT}/graphql`;
logger.info({ url }, production ? "gateway listening" : "gateway listening; Apollo Sandbox at this URL");
