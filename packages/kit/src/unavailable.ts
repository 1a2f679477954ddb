/**
 * Failures of the infrastructure under a request (PostgreSQL restarting, Redis away, a subgraph
 * process being replaced) as opposed to bugs. A client can do something useful with the former —
 * retry shortly — so they answer UNAVAILABLE with `retryAfterSeconds` instead of INTERNAL.
 */

/** Seconds a client should wait before retrying a request refused as UNAVAILABLE. */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 2;

/** Node's socket errors: the peer is not there (yet) or went away mid-request. */
const SOCKET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTCONN",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * Prisma's codes for a database it cannot reach or lost: P1001 can't reach, P1002 timed out,
 * P1008 operation timed out, P1017 server closed the connection, P2024 no pool connection in time,
 * P2028 transaction API error (e.g. the transaction's connection died).
 */
const PRISMA_CODES = new Set(["P1001", "P1002", "P1008", "P1017", "P2024", "P2028"]);

/**
 * PostgreSQL SQLSTATEs of a server going away or not yet accepting work: class 08 (connection
 * exception), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting up or
 * in recovery), 53300 too many connections.
 */
function isUnavailableSqlState(code: string): boolean {
  return code.startsWith("08") || code === "57P01" || code === "57P02" || code === "57P03" || code === "53300";
}

/** Messages of drivers that carry no code for it (pg, ioredis, Prisma's adapter). */
const MESSAGES = [
  /Connection terminated/i,
  /Connection is closed/i,
  /Client has encountered a connection error/i,
  /Stream isn't writeable and enableOfflineQueue/i,
  /Reached the max retries per request limit/i,
  /the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)/i,
  /terminating connection due to administrator command/i,
  /Can't reach database server/i,
  /Timed out fetching a new connection/i,
];

/**
 * Kinds Prisma's driver adapters give the errors they wrap (`meta.driverAdapterError.cause.kind`)
 * when the database is away rather than the statement wrong.
 */
/** The NATS client's errors while a server restarts or a stream has no leader yet (by name: kit does not depend on the client). */
const NATS_ERROR_NAMES = new Set(["TimeoutError", "NoResponders", "ConnectionError", "ClosedConnectionError", "DrainingConnectionError"]);

const ADAPTER_KINDS = new Set([
  "DatabaseNotReachable",
  "ConnectionClosed",
  "SocketTimeout",
  "TooManyConnections",
  "TransactionAlreadyClosed",
]);

interface ErrorLike {
  code?: unknown;
  originalCode?: unknown;
  kind?: unknown;
  name?: unknown;
  message?: unknown;
  cause?: unknown;
  meta?: { driverAdapterError?: unknown };
}

/**
 * Whether an error, or any error it wraps, is the infrastructure being away. Follows `cause` and
 * Prisma's `meta.driverAdapterError`, where the driver's own error (SQLSTATE, socket code) sits.
 */
export function isInfrastructureUnavailable(error: unknown): boolean {
  const seen = new Set<unknown>();
  const queue: unknown[] = [error];
  while (queue.length > 0 && seen.size < 20) {
    const current = queue.shift();
    if (!current || typeof current !== "object" || seen.has(current)) continue;
    seen.add(current);
    const record = current as ErrorLike;
    for (const code of [record.code, record.originalCode]) {
      if (typeof code !== "string") continue;
      if (SOCKET_CODES.has(code) || PRISMA_CODES.has(code) || isUnavailableSqlState(code)) return true;
    }
    if (typeof record.kind === "string" && ADAPTER_KINDS.has(record.kind)) return true;
    if (record.name === "PrismaClientInitializationError" || record.name === "MaxRetriesPerRequestError") return true;
    if (typeof record.name === "string" && NATS_ERROR_NAMES.has(record.name)) return true;
    if (typeof record.message === "string" && MESSAGES.some((pattern) => pattern.test(record.message as string))) return true;
    queue.push(record.cause, record.meta?.driverAdapterError);
  }
  return false;
}

/** The last line of an error's message (Prisma's first lines quote the calling code), for a log line. */
export function errorSummary(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.trim().split("\n").at(-1)?.slice(0, 300) ?? "";
}
