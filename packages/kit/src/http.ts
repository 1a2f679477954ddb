import { timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { Registry } from "prom-client";
import { HeaderMap, type ApolloServer, type BaseContext, type HTTPGraphQLResponse } from "@apollo/server";
import type { Logger } from "pino";
import { currentContext } from "./context.ts";
import { toGraphQLError } from "./errors.ts";

export interface GraphQLRoute<C extends BaseContext> {
  server: ApolloServer<C>;
  /**
   * Builds the per-request context; runs before execution, may throw a DomainError. `rawBody` is
   * the body exactly as received (subgraphs check the gateway's assertion covers it).
   */
  context: (request: http.IncomingMessage, rawBody: string) => Promise<C>;
  /**
   * Wraps execution so per-request state (AsyncLocalStorage) is visible in resolvers and logs.
   * Receives the request so it can read headers such as the correlation id.
   */
  around?: <T>(request: http.IncomingMessage, run: () => Promise<T>) => Promise<T>;
  /**
   * Runs inside `around`, before the request reaches Apollo and so before its document is parsed:
   * meters and size caps. An error it throws is the answer, mapped by toGraphQLError.
   */
  admit?: (request: http.IncomingMessage, operation: { query: unknown; variables: unknown }) => Promise<void>;
}

export interface HttpServerOptions<C extends BaseContext> {
  logger: Logger;
  graphql: GraphQLRoute<C>;
  /** Readiness: dependencies reachable (database, NATS). Liveness (/healthz) needs only the process. */
  ready: () => Promise<boolean>;
  graphqlPath?: string;
  /** Extra GET routes by exact path, e.g. auth's JWKS; they answer with a JSON body. */
  routes?: Record<string, () => Promise<unknown>>;
  /**
   * Prometheus text at GET /metrics. With `bearerToken`, only requests that present it are
   * answered (the gateway's port is public); without one, everyone on the port is.
   */
  metrics?: { registry: Registry; bearerToken?: string | undefined };
  /** Requests larger than this are refused with 413 before parsing; a GraphQL document is small. */
  maxBodyBytes?: number;
  /**
   * Anything no route above matched (e.g. the gateway's static web app); answers true when it
   * handled the request, false for the usual 404.
   */
  fallback?: (request: http.IncomingMessage, response: http.ServerResponse, url: URL) => Promise<boolean>;
  /** Answered in `x-vaultpay-instance` on /healthz and /readyz (VAULTPAY_INSTANCE_ID). */
  instanceId?: string | undefined;
}

/** The header a supervised process names itself in on its health endpoints. */
export const INSTANCE_HEADER = "x-vaultpay-instance";

const DEFAULT_MAX_BODY_BYTES = 256 * 1024;

class BodyTooLargeError extends Error {}

function readBody(request: http.IncomingMessage, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(request.headers["content-length"] ?? 0);
    if (declared > maxBytes) return reject(new BodyTooLargeError());
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        request.destroy();
        reject(new BodyTooLargeError());
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

function sendJson(response: http.ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

/** The document and variables of a POST body or a GET query string, unparsed. */
function operationOf(body: unknown, url: URL): { query: unknown; variables: unknown } {
  if (body && typeof body === "object" && !Array.isArray(body)) {
    const { query, variables } = body as { query?: unknown; variables?: unknown };
    return { query, variables };
  }
  const variables = url.searchParams.get("variables");
  let parsed: unknown = variables;
  try {
    parsed = variables === null ? undefined : JSON.parse(variables);
  } catch {
    // Left as text: Apollo refuses it with its own BAD_REQUEST.
  }
  return { query: url.searchParams.get("query") ?? undefined, variables: parsed };
}

/** An `admit` refusal as Apollo would answer it: the mapped error, its status and headers. */
function refusal(error: unknown): HTTPGraphQLResponse {
  const { error: mapped, internal } = toGraphQLError(error);
  if (internal) throw error;
  const { http: head, ...extensions } = mapped.extensions as { http?: { status?: number; headers?: Map<string, string> } };
  const responseHeaders = new HeaderMap([["content-type", "application/json"]]);
  for (const [key, value] of head?.headers ?? []) responseHeaders.set(key, value);
  return {
    status: head?.status && head.status !== 200 ? head.status : 400,
    headers: responseHeaders,
    body: { kind: "complete", string: JSON.stringify({ errors: [{ message: mapped.message, extensions }] }) },
  };
}

/**
 * A plain node:http server for Apollo Server plus health endpoints. Written against Apollo's own
 * `executeHTTPGraphQLRequest` instead of pulling in Express, because the gateway also needs the raw
 * server for graphql-ws upgrades on the same path.
 */
export function createHttpServer<C extends BaseContext>(options: HttpServerOptions<C>): http.Server {
  return http.createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://localhost");
    route(options, request, response, url).catch((error: unknown) => {
      options.logger.error({ err: error }, "http handler failed");
      if (!response.headersSent) sendJson(response, 500, { errors: [{ message: "Internal error", extensions: { code: "INTERNAL" } }] });
      else response.end();
    });
  });
}

/** Health, GraphQL, metrics, the extra routes, the fallback, in that order; else 404. */
async function route<C extends BaseContext>(
  options: HttpServerOptions<C>,
  request: http.IncomingMessage,
  response: http.ServerResponse,
  url: URL,
): Promise<void> {
  if (options.instanceId && (url.pathname === "/healthz" || url.pathname === "/readyz"))
    response.setHeader(INSTANCE_HEADER, options.instanceId);
  if (url.pathname === "/healthz") return sendJson(response, 200, { status: "ok" });
  if (url.pathname === "/readyz") {
    const isReady = await options.ready().catch(() => false);
    return sendJson(response, isReady ? 200 : 503, { status: isReady ? "ready" : "not ready" });
  }
  if (url.pathname === (options.graphqlPath ?? "/graphql")) {
    return serveGraphQL(options.graphql, options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, request, response, url);
  }
  if (url.pathname === "/metrics" && options.metrics && request.method === "GET") return sendMetrics(request, response, options.metrics);
  const extra = options.routes?.[url.pathname];
  if (extra && request.method === "GET") return sendJson(response, 200, await extra());
  if (options.fallback && (await options.fallback(request, response, url))) return;
  sendJson(response, 404, { error: "not found" });
}

/** One GraphQL request: read, admitted (or refused) and executed inside `around`, then answered. */
async function serveGraphQL<C extends BaseContext>(
  graphql: GraphQLRoute<C>,
  maxBodyBytes: number,
  request: http.IncomingMessage,
  response: http.ServerResponse,
  url: URL,
): Promise<void> {
  const read = await readGraphQLRequest(request, response, maxBodyBytes);
  if (!read) return;
  const { rawBody, body, headers } = read;
  const around = graphql.around ?? (<T>(_request: http.IncomingMessage, run: () => Promise<T>) => run());
  let correlationId: string | undefined;
  const result = await around(request, async () => {
    correlationId = currentContext()?.correlationId;
    if (graphql.admit) {
      try {
        await graphql.admit(request, operationOf(body, url));
      } catch (error) {
        return refusal(error);
      }
    }
    return graphql.server.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method: request.method ?? "GET", headers, search: url.search, body },
      context: () => graphql.context(request, rawBody),
    });
  });
  for (const [key, value] of result.headers) response.setHeader(key, value);
  // Echoed so a client can quote it when reporting a problem.
  if (correlationId) response.setHeader("x-correlation-id", correlationId);
  response.statusCode = result.status ?? 200;
  if (result.body.kind === "complete") {
    response.end(result.body.string);
    return;
  }
  for await (const chunk of result.body.asyncIterator) response.write(chunk);
  response.end();
}

/**
 * The body (as received, and parsed when it is JSON) and headers as Apollo takes them; undefined
 * when the request was already answered: 413 for a body over the cap, 400 for JSON that is not.
 */
async function readGraphQLRequest(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  maxBodyBytes: number,
): Promise<{ rawBody: string; body: unknown; headers: HeaderMap } | undefined> {
  let rawBody: string;
  try {
    rawBody = await readBody(request, maxBodyBytes);
  } catch (error) {
    if (!(error instanceof BodyTooLargeError)) throw error;
    sendJson(response, 413, { errors: [{ message: "Request body too large", extensions: { code: "BAD_REQUEST" } }] });
    return undefined;
  }
  const headers = new HeaderMap();
  for (const [key, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(", ") : value);
  }
  if (!(headers.get("content-type") ?? "").includes("application/json") || rawBody.length === 0) return { rawBody, body: rawBody, headers };
  try {
    return { rawBody, body: JSON.parse(rawBody), headers };
  } catch {
    sendJson(response, 400, { errors: [{ message: "Body is not valid JSON", extensions: { code: "BAD_REQUEST" } }] });
    return undefined;
  }
}

async function sendMetrics(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  metrics: NonNullable<HttpServerOptions<BaseContext>["metrics"]>,
) {
  if (metrics.bearerToken) {
    const given = Buffer.from(request.headers.authorization ?? "");
    const expected = Buffer.from(`Bearer ${metrics.bearerToken}`);
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      return sendJson(response, 401, { error: "metrics need the bearer token" });
  }
  const body = await metrics.registry.metrics();
  response.writeHead(200, { "content-type": metrics.registry.contentType });
  response.end(body);
}

/** Listens and resolves once bound, so callers can print the real address. */
export function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Stops accepting connections and waits for in-flight requests, closing idle keep-alives. */
export function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
