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
  constructor(
    readonly code: Exclude<ErrorCode, "INTERNAL">,
    message: string,
    /** Safe, public details, e.g. `{ field: "email" }` or `{ retryAfterSeconds: 30 }`. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const PUBLIC_CODES = new Set<string>([
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

/**
 * Apollo `formatError`: domain errors become their public code; anything unexpected becomes
 * INTERNAL with a generic message, and the real error is logged (never sent: it may hold SQL,
 * stack traces or secrets).
 */
export function createErrorFormatter(logger: Logger) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
    if (original instanceof DomainError) {
      return {
        message: original.message,
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: { ...original.details, code: original.code },
      };
    }
    const code = formatted.extensions?.code;
    if (typeof code === "string" && PUBLIC_CODES.has(code)) {
      const { stacktrace: _stacktrace, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, extensions };
    }
    if (isInfrastructureUnavailable(original)) {
      // Expected while a dependency restarts: one line, no stack.
      logger.warn({ reason: errorSummary(original), path: formatted.path }, "infrastructure unavailable");
      return {
        message: "The service is briefly unavailable; retry shortly",
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: { code: "UNAVAILABLE", retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_SECONDS },
      };
    }
    logger.error({ err: original, path: formatted.path }, "unexpected error");
    return {
      message: "Internal error",
      ...(formatted.path ? { path: formatted.path } : {}),
      extensions: { code: "INTERNAL" },
    };
  };
}
