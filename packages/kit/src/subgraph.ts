import type http from "node:http";
import { ApolloServer, type BaseContext } from "@apollo/server";
import { ApolloServerPluginInlineTraceDisabled, ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import { buildSubgraphSchema } from "@apollo/subgraph";
import type { GraphQLResolverMap } from "@apollo/subgraph";
import { gql } from "graphql-tag";
import type { Logger } from "pino";
import { correlationIdFrom, runWithContext, type RequestContext } from "./context.ts";
import { createErrorFormatter } from "./errors.ts";
import { closeServer, createHttpServer, listen } from "./http.ts";
import type { Lifecycle } from "./lifecycle.ts";

export interface SubgraphOptions<C extends BaseContext> {
  name: string;
  /** The subgraph's SDL (Federation 2, with @link). */
  typeDefs: string;
  resolvers: GraphQLResolverMap<C>;
  logger: Logger;
  lifecycle: Lifecycle;
  port: number;
  host: string;
  production: boolean;
  /** Per-request context from the request and its correlation context. */
  context: (request: http.IncomingMessage, requestContext: RequestContext) => Promise<C>;
  ready: () => Promise<boolean>;
}

function requestContextOf(request: http.IncomingMessage): RequestContext {
  const header = (name: string) => {
    const value = request.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  return {
    correlationId: correlationIdFrom(header("x-correlation-id")),
    actor: { deviceId: header("x-device-id"), ip: header("x-forwarded-for") ?? request.socket.remoteAddress },
  };
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
    plugins: [ApolloServerPluginLandingPageDisabled(), ApolloServerPluginInlineTraceDisabled()],
    introspection: !options.production,
    formatError: createErrorFormatter(logger),
    includeStacktraceInErrorResponses: false,
  });
  await apollo.start();
  const contexts = new WeakMap<http.IncomingMessage, RequestContext>();
  const server = createHttpServer<C>({
    logger,
    ready: options.ready,
    graphql: {
      server: apollo,
      around: (request, run) => {
        const requestContext = requestContextOf(request);
        contexts.set(request, requestContext);
        return runWithContext(requestContext, run);
      },
      context: (request) => options.context(request, contexts.get(request) ?? requestContextOf(request)),
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
