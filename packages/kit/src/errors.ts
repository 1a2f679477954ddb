import { GraphQLError, type GraphQLFormattedError } from "graphql";
import type { Logger } from "pino";
import { UNAVAILABLE_RETRY_AFTER_SECONDS, errorSummary, isInfrastructureUnavailable } from "./unavailable.ts";

/** The public error codes of the API (shared/API.md). */
export type ErrorCode =
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "BAD_USER_INPUT"
  | "NOT_FOUND"
  | "RATE_LIMITED"
  | "CONFLICT"
  | "INSUFFICIENT_FUNDS"
  /** The infrastructure under the request is away for a moment: retry after `retryAfterSeconds`. */
  | "UNAVAILABLE"
  | "INTERNAL";

/**
 * The one error type domain code throws for an expected failure. It carries no transport types;
 * the GraphQL edge maps it once (formatError) to `extensions.code`.
 */
export class DomainError extends Error {
  override name = "DomainError";
  readonly code: Exclude<ErrorCode, "INTERNAL">;
  /** Safe, public details, e.g. `{ field: "email" }` or `{ retryAfterSeconds: 30 }`. */
  readonly details: Record<string, unknown>;

  constructor(code: Exclude<ErrorCode, "INTERNAL">, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

/**
 * The codes a client may see as they are: the API's own (shared/API.md) and Apollo's for requests
 * that never reached a resolver. The one list: the subgraphs' formatter, the gateway's formatter
 * and its subgraph responses, and the gateway's WebSocket path all read it.
 */
export const PUBLIC_ERROR_CODES: ReadonlySet<string> = new Set<string>([
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "BAD_USER_INPUT",
  "NOT_FOUND",
  "RATE_LIMITED",
  "CONFLICT",
  "INSUFFICIENT_FUNDS",
  "UNAVAILABLE",
  // Apollo's own codes for requests that never reached a resolver.
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "BAD_REQUEST",
  "PERSISTED_QUERY_NOT_FOUND",
  "PERSISTED_QUERY_NOT_SUPPORTED",
  "OPERATION_RESOLUTION_FAILURE",
]);

/** HTTP statuses other than 200 that a code brings with it. */
const HTTP_STATUS: Partial<Record<string, number>> = { RATE_LIMITED: 429 };

/**
 * graphql-js' "Did you mean …?" hints. With introspection off they would let a client rebuild the
 * schema by guessing names, so they are cut wherever introspection is off.
 */
const SUGGESTION = / ?Did you mean(.+?)\?$/;

export interface ErrorMapping {
  /** Cut "Did you mean …?" from messages (whenever introspection is off). */
  hideSchemaDetails?: boolean;
  /** Attach `extensions.http` (status, Retry-After) for Apollo's HTTP answer; off for WebSocket. */
  http?: boolean;
}

/**
 * Any error as the GraphQLError a client may see: a DomainError (thrown or wrapped) becomes its
 * public code with its details, a RATE_LIMITED one also its 429 status and Retry-After header; an
 * error that already carries a public code keeps it; anything else becomes INTERNAL with a generic
 * message (its text may hold SQL, stack traces or secrets). `internal` says which case it was, so
 * the caller logs the real error.
 */
export function toGraphQLError(error: unknown, mapping: ErrorMapping = {}): { error: GraphQLError; internal: boolean; unavailable?: true } {
  const graphQLError = error instanceof GraphQLError ? error : undefined;
  const original = graphQLError?.originalError ?? error;
  const position = { nodes: graphQLError?.nodes, path: graphQLError?.path };
  if (original instanceof DomainError) {
    const headers = new Map<string, string>();
    if (typeof original.details.retryAfterSeconds === "number") headers.set("retry-after", String(original.details.retryAfterSeconds));
    const http = mapping.http === false ? {} : { http: { status: HTTP_STATUS[original.code] ?? 200, headers } };
    const message = mapping.hideSchemaDetails ? original.message.replace(SUGGESTION, "") : original.message;
    return {
      error: new GraphQLError(message, {
        ...position,
        originalError: original,
        extensions: { ...original.details, code: original.code, ...http },
      }),
      internal: false,
    };
  }
  const code = graphQLError?.extensions.code;
  if (graphQLError && typeof code === "string" && PUBLIC_ERROR_CODES.has(code)) {
    const { stacktrace: _stacktrace, ...extensions } = graphQLError.extensions;
    const message = mapping.hideSchemaDetails ? graphQLError.message.replace(SUGGESTION, "") : graphQLError.message;
    return { error: new GraphQLError(message, { ...position, extensions }), internal: false };
  }
  if (isInfrastructureUnavailable(original)) {
    const extensions = { code: "UNAVAILABLE", retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_SECONDS };
    return {
      error: new GraphQLError("The service is briefly unavailable; retry shortly", { path: graphQLError?.path, extensions }),
      internal: false,
      unavailable: true,
    };
  }
  return { error: new GraphQLError("Internal error", { path: graphQLError?.path, extensions: { code: "INTERNAL" } }), internal: true };
}

/**
 * Apollo `formatError` on toGraphQLError: public codes pass, anything unexpected becomes INTERNAL
 * and the real error is logged with its stack (never sent). Client errors are not logged here;
 * the request log names their codes, without stacks.
 */
export function createErrorFormatter(logger: Logger, mapping: ErrorMapping = {}) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
    // Apollo has already given its own errors (parse, validation, bad request) their code here;
    // the original rides along so toGraphQLError can tell an outage from a bug.
    const candidate =
      original instanceof DomainError
        ? original
        : new GraphQLError(formatted.message, {
            extensions: formatted.extensions,
            ...(original instanceof Error ? { originalError: original } : {}),
          });
    const { error: mapped, internal, unavailable } = toGraphQLError(candidate, mapping);
    if (internal) logger.error({ err: original, path: formatted.path }, "unexpected error");
    // Expected while a dependency restarts: one line, no stack.
    if (unavailable) logger.warn({ reason: errorSummary(original), path: formatted.path }, "infrastructure unavailable");
    const { http: _http, ...extensions } = mapped.extensions;
    return {
      message: mapped.message,
      ...(formatted.locations && !internal ? { locations: formatted.locations } : {}),
      ...(formatted.path ? { path: formatted.path } : {}),
      extensions,
    };
  };
}
