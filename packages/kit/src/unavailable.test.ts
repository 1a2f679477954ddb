import { describe, expect, it } from "vitest";
import { GraphQLError } from "graphql";
import { DomainError, toGraphQLError } from "./errors.ts";
import { errorSummary, isInfrastructureUnavailable } from "./unavailable.ts";

/** The shapes seen from Prisma 7's pg adapter and ioredis while PostgreSQL or Redis restarted. */
const prismaUnreachable = Object.assign(
  new Error("\nInvalid `db.transfer.findUnique()` invocation:\n\nCan't reach database server at 127.0.0.1:5432"),
  {
    code: "P1001",
    meta: { driverAdapterError: { name: "DriverAdapterError", cause: { kind: "DatabaseNotReachable", host: "127.0.0.1", port: 5432 } } },
  },
);
const prismaStartingUp = Object.assign(new Error("Database error. Code: `57P03`."), {
  code: "P2039",
  meta: { driverAdapterError: { name: "DriverAdapterError", cause: { originalCode: "57P03", kind: "postgres", code: "57P03" } } },
});
const uniqueViolation = Object.assign(new Error("Unique constraint failed on the fields: (`email`)"), {
  code: "P2002",
  meta: { target: ["email"] },
});

describe("infrastructure unavailable", () => {
  it.each([
    ["Prisma cannot reach the server", prismaUnreachable],
    ["the server is starting up (SQLSTATE inside the adapter's error)", prismaStartingUp],
    [
      "a refused socket as a cause",
      new Error("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) }),
    ],
    ["ioredis without its offline queue", new Error("Stream isn't writeable and enableOfflineQueue options is false")],
    [
      "ioredis out of retries",
      Object.assign(new Error("Reached the max retries per request limit (which is 1)."), { name: "MaxRetriesPerRequestError" }),
    ],
    [
      "a JetStream publish while the stream has no leader (NATS' RequestError around NoResponders)",
      Object.assign(new Error("503"), {
        name: "RequestError",
        cause: Object.assign(new Error("no responders: 'orders'"), { name: "NoResponders" }),
      }),
    ],
    ["a NATS request timing out", Object.assign(new Error("timeout"), { name: "TimeoutError" })],
  ])("recognizes %s", (_what, error) => {
    expect(isInfrastructureUnavailable(error)).toBe(true);
  });

  it.each([
    ["a unique violation", uniqueViolation],
    ["a domain error", new DomainError("NOT_FOUND", "No such account")],
    ["a bug", new TypeError("Cannot read properties of undefined")],
    ["nothing", undefined],
  ])("leaves %s alone", (_what, error) => {
    expect(isInfrastructureUnavailable(error)).toBe(false);
  });

  it("maps to UNAVAILABLE with a retry hint, through a GraphQLError too, and summarizes in one line", () => {
    const wrapped = new GraphQLError("boom", { originalError: prismaUnreachable, path: ["initiateTransfer"] });
    const { error, internal, unavailable } = toGraphQLError(wrapped);
    expect({ internal, unavailable, code: error.extensions.code, path: error.path }).toEqual({
      internal: false,
      unavailable: true,
      code: "UNAVAILABLE",
      path: ["initiateTransfer"],
    });
    expect(error.extensions.retryAfterSeconds).toBeGreaterThan(0);
    expect(error.message).not.toMatch(/127\.0\.0\.1|findUnique/);
    expect(errorSummary(prismaUnreachable)).toBe("Can't reach database server at 127.0.0.1:5432");
  });
});
