import { Writable } from "node:stream";
import { GraphQLError } from "graphql";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, DomainError, baseConfigSchema, correlationIdFrom, createErrorFormatter, createLogger, parseConfig, runWithContext } from "./index.ts";

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger({ service: "test", destination }) };
}

describe("config", () => {
  it("names every bad variable on one line", () => {
    const schema = baseConfigSchema.extend({ PORT: z.coerce.number().int() });
    expect(() => parseConfig(schema, { NODE_ENV: "prod", PORT: "abc" })).toThrow(ConfigError);
    try {
      parseConfig(schema, { NODE_ENV: "prod", PORT: "abc" });
    } catch (error) {
      expect((error as Error).message).not.toContain("\n");
      expect((error as Error).message).toMatch(/NODE_ENV: .*; PORT: /);
    }
  });

  it("applies defaults", () => {
    expect(parseConfig(baseConfigSchema, {})).toEqual({ NODE_ENV: "development", LOG_LEVEL: "info", NATS_URL: "nats://127.0.0.1:4222", VAULTPAY_SUPERVISED: false });
  });
});

describe("logger", () => {
  it("carries the correlation id and redacts secrets", () => {
    const { lines, logger } = capture();
    runWithContext({ correlationId: "corr-1", actor: {} }, () => {
      logger.info({ password: "hunter2", input: { otp: "123456", refreshToken: "r1" }, authorization: "Bearer x" }, "login");
    });
    expect(lines[0]).toMatchObject({ correlationId: "corr-1", service: "test", msg: "login", password: "[redacted]", authorization: "[redacted]" });
    expect(JSON.stringify(lines[0])).not.toMatch(/hunter2|123456|r1"|Bearer x/);
  });
});

describe("correlation ids", () => {
  it("keeps a plain caller id and replaces anything else", () => {
    expect(correlationIdFrom("abc-123")).toBe("abc-123");
    expect(correlationIdFrom(["first", "second"])).toBe("first");
    const replaced = correlationIdFrom("bad id\nwith newline");
    expect(replaced).toMatch(/^[0-9a-f-]{36}$/);
    expect(correlationIdFrom("x".repeat(129))).not.toBe("x".repeat(129));
  });
});

describe("error formatting", () => {
  it("maps domain errors to their code and hides everything else as INTERNAL", () => {
    const { lines, logger } = capture();
    const format = createErrorFormatter(logger);
    const domain = new GraphQLError("wrapped", { originalError: new DomainError("NOT_FOUND", "Account not found", { field: "id" }) });
    expect(format({ message: "wrapped" }, domain)).toEqual({ message: "Account not found", extensions: { code: "NOT_FOUND", field: "id" } });

    const leak = new GraphQLError("x", { originalError: new Error('relation "users" does not exist; password=secret') });
    const formatted = format({ message: leak.message, extensions: { code: "INTERNAL_SERVER_ERROR", stacktrace: ["at x"] } }, leak);
    expect(formatted).toEqual({ message: "Internal error", extensions: { code: "INTERNAL" } });
    expect(lines).toHaveLength(1);

    const validation = format({ message: "Cannot query field", extensions: { code: "GRAPHQL_VALIDATION_FAILED", stacktrace: ["at y"] } }, new GraphQLError("v"));
    expect(validation).toEqual({ message: "Cannot query field", extensions: { code: "GRAPHQL_VALIDATION_FAILED" } });
  });
});
