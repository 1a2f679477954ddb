import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { GraphQLError } from "graphql";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ConfigError,
  DomainError,
  baseConfigSchema,
  canonicalUuid,
  correlationIdFrom,
  createErrorFormatter,
  createLogger,
  introspectionEnabled,
  isUuid,
  parseConfig,
  runWithContext,
  toGraphQLError,
  tracesUrl,
} from "./index.ts";

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

  it("reads NAME_FILE as NAME, refuses both or an unreadable file by name, never echoing contents", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "kit-secret-"));
    try {
      const file = path.join(dir, "secret");
      writeFileSync(file, "s3cret-from-file\n");
      const schema = z.object({ TOKEN: z.string().min(1), OTHER: z.string().default("x") });
      expect(parseConfig(schema, { TOKEN_FILE: file })).toEqual({ TOKEN: "s3cret-from-file", OTHER: "x" });
      const both = () => parseConfig(schema, { TOKEN_FILE: file, TOKEN: "inline" });
      expect(both).toThrow(/TOKEN_FILE: TOKEN is set too/);
      const missing = () => parseConfig(schema, { TOKEN_FILE: path.join(dir, "nope") });
      expect(missing).toThrow(/^invalid configuration: TOKEN_FILE: cannot read .*nope \(ENOENT\); TOKEN: /);
      writeFileSync(file, "bad\n");
      expect(() => parseConfig(z.object({ TOKEN: z.string().min(10) }), { TOKEN_FILE: file })).toThrow(/TOKEN: /);
      expect(() => parseConfig(z.object({ TOKEN: z.string().min(10) }), { TOKEN_FILE: file })).not.toThrow(/bad/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("applies defaults", () => {
    expect(parseConfig(baseConfigSchema, {})).toEqual({
      NODE_ENV: "development",
      LOG_LEVEL: "info",
      NATS_URL: "nats://127.0.0.1:4222",
      NATS_STREAM_REPLICAS: 1,
      NATS_STREAM_MAX_BYTES: 1024 ** 3,
      NATS_STREAM_MAX_AGE_HOURS: 168,
      VAULTPAY_SUPERVISED: false,
      OTEL_BSP_SCHEDULE_DELAY: 5_000,
      OTEL_TRACES_SAMPLER_ARG: 1,
    });
  });

  it("in production wants the process's own NATS user in NATS_URL, and elsewhere takes it without", () => {
    const production = { NODE_ENV: "production" };
    const asProcess = { process: true };
    expect(() => parseConfig(baseConfigSchema, production, asProcess)).toThrow(/NATS_URL: must name this process's own NATS user/);
    const oneWithout = { ...production, NATS_URL: "nats://a:4222,nats://fraud:pw@b:4222" };
    expect(() => parseConfig(baseConfigSchema, oneWithout, asProcess)).toThrow(/NATS_URL/);
    const named = { ...production, NATS_URL: "nats://fraud:pw@a:4222,nats://fraud:pw@b:4222" };
    expect(parseConfig(baseConfigSchema, named, asProcess).NATS_URL).toContain("fraud:pw@");
    expect(parseConfig(baseConfigSchema, { NATS_URL: "nats://127.0.0.1:4222" }, asProcess).NATS_URL).toBe("nats://127.0.0.1:4222");
    // A tool (not a process of the platform) is not held to it.
    expect(parseConfig(baseConfigSchema, production).NODE_ENV).toBe("production");
  });

  it("turns tracing on only with an OTLP endpoint, and checks its bounds", () => {
    expect(tracesUrl(parseConfig(baseConfigSchema, {}))).toBeUndefined();
    expect(tracesUrl(parseConfig(baseConfigSchema, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }))).toBe(
      "http://collector:4318/v1/traces",
    );
    const both = {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://traces:4318/v1/traces",
    };
    expect(tracesUrl(parseConfig(baseConfigSchema, both))).toBe("http://traces:4318/v1/traces");
    expect(() => parseConfig(baseConfigSchema, { OTEL_TRACES_SAMPLER_ARG: "1.5" })).toThrow(/OTEL_TRACES_SAMPLER_ARG/);
    expect(() => parseConfig(baseConfigSchema, { OTEL_BSP_SCHEDULE_DELAY: "0" })).toThrow(/OTEL_BSP_SCHEDULE_DELAY/);
  });
});

describe("logger", () => {
  it("carries the correlation id and redacts secrets", () => {
    const { lines, logger } = capture();
    runWithContext({ correlationId: "corr-1", actor: {} }, () => {
      logger.info({ password: "hunter2", input: { otp: "123456", refreshToken: "r1" }, authorization: "Bearer x" }, "login");
    });
    expect(lines[0]).toMatchObject({
      correlationId: "corr-1",
      service: "test",
      msg: "login",
      password: "[redacted]",
      authorization: "[redacted]",
    });
    expect(JSON.stringify(lines[0])).not.toMatch(/hunter2|123456|r1"|Bearer x/);
  });
});

describe("ids", () => {
  it("takes a uuid in either case in its stored, lower-case form and leaves anything else as given", () => {
    const id = "0193A1B2-00Ff-7000-8000-00000000ABCD";
    expect(isUuid(id)).toBe(true);
    expect(canonicalUuid(id)).toBe("0193a1b2-00ff-7000-8000-00000000abcd");
    expect(canonicalUuid("ACC-NOT-A-UUID")).toBe("ACC-NOT-A-UUID");
    expect(isUuid(`${id}0`)).toBe(false);
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
    expect(format({ message: "wrapped" }, domain)).toEqual({
      message: "Account not found",
      extensions: { code: "NOT_FOUND", field: "id" },
    });

    const leak = new GraphQLError("x", { originalError: new Error('relation "users" does not exist; password=secret') });
    const formatted = format({ message: leak.message, extensions: { code: "INTERNAL_SERVER_ERROR", stacktrace: ["at x"] } }, leak);
    expect(formatted).toEqual({ message: "Internal error", extensions: { code: "INTERNAL" } });
    expect(lines).toHaveLength(1);

    const validation = format(
      { message: "Cannot query field", extensions: { code: "GRAPHQL_VALIDATION_FAILED", stacktrace: ["at y"] } },
      new GraphQLError("v"),
    );
    expect(validation).toEqual({ message: "Cannot query field", extensions: { code: "GRAPHQL_VALIDATION_FAILED" } });
  });
});

describe("one error mapping", () => {
  it("gives a domain error its code, details, status and Retry-After, over HTTP and not over WebSocket", () => {
    const limited = new DomainError("RATE_LIMITED", "Too many requests; retry in 3 s", { retryAfterSeconds: 3 });
    const { error, internal } = toGraphQLError(limited);
    expect(internal).toBe(false);
    expect(error.message).toBe("Too many requests; retry in 3 s");
    expect(error.extensions).toMatchObject({ code: "RATE_LIMITED", retryAfterSeconds: 3, http: { status: 429 } });
    expect((error.extensions.http as { headers: Map<string, string> }).headers.get("retry-after")).toBe("3");
    expect(toGraphQLError(limited, { http: false }).error.extensions).toEqual({ code: "RATE_LIMITED", retryAfterSeconds: 3 });
  });

  it("keeps public codes, turns everything else into INTERNAL, and says which", () => {
    expect(
      toGraphQLError(new GraphQLError("Syntax Error", { extensions: { code: "GRAPHQL_PARSE_FAILED", stacktrace: ["at x"] } })).error
        .extensions,
    ).toEqual({
      code: "GRAPHQL_PARSE_FAILED",
    });
    // A graphql-js error without a code is not known to be the client's fault.
    const plain = toGraphQLError(new GraphQLError('Argument "id" of required type "ID!" was not provided.'));
    expect(plain).toMatchObject({ internal: true, error: { message: "Internal error", extensions: { code: "INTERNAL" } } });
    expect(toGraphQLError(new Error("boom")).internal).toBe(true);
  });

  it("cuts 'Did you mean' when schema details are hidden, in domain and Apollo errors alike", () => {
    const { logger } = capture();
    const hidden = createErrorFormatter(logger, { hideSchemaDetails: true });
    const validation = {
      message: 'Cannot query field "myAccount" on type "Query". Did you mean "myAccounts"?',
      extensions: { code: "GRAPHQL_VALIDATION_FAILED" },
    };
    expect(hidden(validation, new GraphQLError(validation.message)).message).toBe('Cannot query field "myAccount" on type "Query".');
    const coercion = new DomainError(
      "BAD_USER_INPUT",
      'Value "SAVING" does not exist in "AccountType" enum. Did you mean the enum value "SAVINGS"?',
    );
    expect(hidden({ message: coercion.message }, coercion).message).toBe('Value "SAVING" does not exist in "AccountType" enum.');
    expect(createErrorFormatter(logger)(validation, new GraphQLError(validation.message)).message).toMatch(/Did you mean/);
  });

  it("turns introspection off in production whatever the setting, and on request elsewhere", () => {
    expect(introspectionEnabled({ NODE_ENV: "development" })).toBe(true);
    expect(introspectionEnabled({ NODE_ENV: "test", GRAPHQL_INTROSPECTION: false })).toBe(false);
    expect(introspectionEnabled({ NODE_ENV: "production", GRAPHQL_INTROSPECTION: true })).toBe(false);
  });
});
