import { readFileSync } from "node:fs";
import { ApolloGateway, RemoteGraphQLDataSource } from "@apollo/gateway";
import { ApolloServer } from "@apollo/server";
import { ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import { ApolloServerPluginLandingPageLocalDefault } from "@apollo/server/plugin/landingPage/default";
import { connectJetStream } from "@vaultpay/events";
import {
  GATEWAY_ASSERTION_HEADER,
  Lifecycle,
  signGatewayAssertion,
  closeServer,
  correlationIdFrom,
  createErrorFormatter,
  createHttpServer,
  createLogger,
  currentContext,
  listen,
  loadConfig,
  runWithContext,
} from "@vaultpay/kit";
import { gatewayConfigSchema, subgraphUrlOverride } from "./config.ts";
import { requestLogPlugin } from "./request-log.ts";

const config = loadConfig(gatewayConfigSchema);
const production = config.NODE_ENV === "production";
const logger = createLogger({ service: "gateway", level: config.LOG_LEVEL });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();
if (config.VAULTPAY_SUPERVISED) lifecycle.exitWithParent();

const { nc, js } = await connectJetStream(config.NATS_URL, "gateway", logger);
lifecycle.onShutdown("nats", () => nc.drain());

/** Forwards what subgraphs need from the client request: correlation id, device, token. */
class SubgraphDataSource extends RemoteGraphQLDataSource<{ authorization?: string | undefined }> {
  override willSendRequest({ request, context }: Parameters<NonNullable<RemoteGraphQLDataSource["willSendRequest"]>>[0] & { context: { authorization?: string } }) {
    const requestContext = currentContext();
    if (requestContext) {
      request.http?.headers.set("x-correlation-id", requestContext.correlationId);
      request.http?.headers.set(GATEWAY_ASSERTION_HEADER, signGatewayAssertion(config.GATEWAY_SECRET, requestContext.correlationId));
      if (requestContext.actor.deviceId) request.http?.headers.set("x-device-id", requestContext.actor.deviceId);
    }
    if (context.authorization) request.http?.headers.set("authorization", context.authorization);
  }
}

const gateway = new ApolloGateway({
  supergraphSdl: readFileSync(new URL("../../supergraph.graphql", import.meta.url), "utf8"),
  buildService: ({ name, url }) => new SubgraphDataSource({ url: subgraphUrlOverride(config, name) ?? url }),
});

const apollo = new ApolloServer<{ authorization?: string | undefined }>({
  gateway,
  introspection: !production,
  formatError: createErrorFormatter(logger),
  includeStacktraceInErrorResponses: false,
  plugins: [
    production ? ApolloServerPluginLandingPageDisabled() : ApolloServerPluginLandingPageLocalDefault({ embed: true }),
    requestLogPlugin(logger, js),
  ],
});
await apollo.start();
lifecycle.onShutdown("apollo", () => apollo.stop());

const server = createHttpServer({
  logger,
  maxBodyBytes: config.MAX_BODY_BYTES,
  ready: async () => !nc.isClosed(),
  graphql: {
    server: apollo,
    around: (request, run) => {
      const header = (name: string) => {
        const value = request.headers[name];
        return Array.isArray(value) ? value[0] : value;
      };
      return runWithContext(
        {
          correlationId: correlationIdFrom(header("x-correlation-id")),
          actor: { deviceId: header("x-device-id")?.slice(0, 128), ip: request.socket.remoteAddress },
        },
        run,
      );
    },
    context: async (request) => ({ authorization: request.headers.authorization }),
  },
});
await listen(server, config.GATEWAY_PORT, config.GATEWAY_HOST);
lifecycle.onShutdown("http", () => closeServer(server));
const url = `http://${config.GATEWAY_HOST === "0.0.0.0" ? "127.0.0.1" : config.GATEWAY_HOST}:${config.GATEWAY_PORT}/graphql`;
logger.info({ url }, production ? "gateway listening" : "gateway listening; Apollo Sandbox at this URL");
