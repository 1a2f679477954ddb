import { readFileSync } from "node:fs";
import { z } from "zod";

/** A NATS URL, or several separated by commas (the seeds of a cluster). */
export function natsUrlSchema() {
  return z.string().refine((text) => text.split(",").every((part) => URL.canParse(part.trim())), "must be a URL or comma-separated URLs");
}

/** NATS_STREAM_MAX_BYTES unless set: what each stream may hold. */
export const DEFAULT_STREAM_MAX_BYTES = 1024 ** 3;
/** NATS_STREAM_MAX_AGE_HOURS unless set: seven days, the retention Kafka ships with, a week to notice and replay what went wrong. */
export const DEFAULT_STREAM_MAX_AGE_HOURS = 7 * 24;

/** Settings every VaultPay process understands; services extend this with their own. */
export const baseConfigSchema = z.object({
  NODE_ENV: z.enum(["development", "test", "production"]).default("development"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /** One server, or several comma-separated (a cluster's seeds; the client learns the rest). */
  NATS_URL: natsUrlSchema().default("nats://127.0.0.1:4222"),
  /**
   * Copies JetStream keeps of each stream (1 on one server; 3 on a cluster, so an acked event is on
   * a majority of servers before the publish is acknowledged). Every process creates or updates
   * the streams at start, so every process must be given the same number.
   */
  NATS_STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  /**
   * Bytes each stream may hold (1 GiB unless set); a full stream refuses publishes, which wait in
   * the outboxes. Streams are made and updated by every process: give every process the same value.
   */
  NATS_STREAM_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024 ** 2)
    .default(DEFAULT_STREAM_MAX_BYTES),
  /** Hours the event streams keep a message (7 days unless set; 0: until the byte limit). The DLQ keeps its own. */
  NATS_STREAM_MAX_AGE_HOURS: z.coerce.number().int().min(0).default(DEFAULT_STREAM_MAX_AGE_HOURS),
  /** Set by the local stack: the process ends when the stack does, even after a SIGKILL. */
  VAULTPAY_SUPERVISED: z.stringbool().default(false),
  /**
   * Set by the local stack: /healthz and /readyz answer it in `x-vaultpay-instance`, so the stack
   * knows the process that answers on a port is the one it started (not another stack's).
   */
  VAULTPAY_INSTANCE_ID: z.string().optional(),
  /**
   * Schema introspection (and with it "Did you mean …?" hints in errors). Off in production
   * whatever this says; outside production on unless set to false (to try a production-like door).
   */
  GRAPHQL_INTROSPECTION: z.stringbool().optional(),
  /**
   * OpenTelemetry traces go to this OTLP/HTTP collector (`/v1/traces` is appended); unset, tracing
   * is off. OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, the full URL, wins when both are set.
   */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.url().optional(),
  /** Milliseconds finished spans wait to be exported together. */
  OTEL_BSP_SCHEDULE_DELAY: z.coerce.number().int().min(10).max(60_000).default(5_000),
  /** Share of new traces recorded, 0–1 (children follow their parent's decision). */
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
});

/** Where this process exports traces, from the settings above; undefined when tracing is off. */
export function tracesUrl(config: {
  OTEL_EXPORTER_OTLP_ENDPOINT?: string | undefined;
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string | undefined;
}): string | undefined {
  if (config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (!config.OTEL_EXPORTER_OTLP_ENDPOINT) return undefined;
  return `${config.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces`;
}

/** Whether clients may learn the schema: introspection, and the suggestions in error messages. */
export function introspectionEnabled(config: { NODE_ENV: string; GRAPHQL_INTROSPECTION?: boolean | undefined }): boolean {
  return config.NODE_ENV !== "production" && config.GRAPHQL_INTROSPECTION !== false;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** A secret file larger than this is a mistake (a whole key store, a log), not a secret. */
const SECRET_FILE_MAX_BYTES = 64 * 1024;

/**
 * `NAME_FILE=/run/secrets/name` stands for `NAME=<the file's contents>` (Docker and Kubernetes
 * mount secrets as files, which keeps them out of `ps e` and crash dumps of the environment). One
 * trailing newline is dropped, as editors and `echo` add one. Setting both is refused: which one
 * wins would be a guess. Problems are returned by variable name; the file's contents never appear.
 */
export function resolveSecretFiles(env: NodeJS.ProcessEnv, names: ReadonlySet<string>): { env: NodeJS.ProcessEnv; problems: string[] } {
  const resolved: NodeJS.ProcessEnv = { ...env };
  const problems: string[] = [];
  for (const [key, file] of Object.entries(env)) {
    if (!key.endsWith("_FILE") || file === undefined) continue;
    // Only the process's own settings: the environment holds other tools' *_FILE (SSL_CERT_FILE…).
    const name = key.slice(0, -5);
    if (!names.has(name)) continue;
    if (env[name] !== undefined && env[name] !== "") {
      problems.push(`${key}: ${name} is set too; give one of them`);
      continue;
    }
    try {
      const content = readFileSync(file);
      if (content.length > SECRET_FILE_MAX_BYTES) throw new Error("too large");
      resolved[name] = content.toString("utf8").replace(/\r?\n$/, "");
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      problems.push(`${key}: cannot read ${file} (${reason})`);
    }
    delete resolved[key];
  }
  return { env: resolved, problems };
}

/** The variable names a config schema reads (through refinements and transforms). */
export function configKeys(schema: z.ZodType): Set<string> {
  const def = (schema as unknown as { def?: { in?: z.ZodType; innerType?: z.ZodType; schema?: z.ZodType } }).def;
  const shape = (schema as unknown as { shape?: Record<string, unknown> }).shape;
  if (shape) return new Set(Object.keys(shape));
  const inner = def?.in ?? def?.innerType ?? def?.schema;
  return inner ? configKeys(inner) : new Set();
}

/**
 * Validates the environment once at start (after reading `*_FILE` secrets). The message names
 * every bad variable on one line, so an operator reading a crash loop sees the cause without a
 * stack trace.
 */
export interface ConfigOptions {
  /** A VaultPay process (a subgraph, the gateway): in production its NATS_URL names its own NATS user. */
  process?: boolean;
}

export function parseConfig<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env, options: ConfigOptions = {}): z.infer<S> {
  const files = resolveSecretFiles(env, configKeys(schema));
  const result = schema.safeParse(files.env);
  const production = options.process ? processProductionProblems(files.env) : [];
  if (result.success && files.problems.length === 0 && production.length === 0) return result.data;
  const issues = result.success ? [] : result.error.issues;
  const problems = [...files.problems, ...issues.map((issue) => `${issue.path.join(".") || "(env)"}: ${issue.message}`), ...production];
  throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
}

/**
 * What a process's settings lack in production whatever its own schema says: a NATS_URL naming the
 * process's own NATS user (nats://<user>:<password>@host:4222), since the server lets each user
 * publish only its own service's events (packages/events/src/permissions.ts). Without a user the
 * connection would be refused by a NATS that checks, or accepted by one that checks nothing.
 */
function processProductionProblems(env: NodeJS.ProcessEnv): string[] {
  const { NODE_ENV, NATS_URL = "" } = env;
  if (NODE_ENV !== "production") return [];
  const named = NATS_URL.split(",").every((part) => URL.canParse(part.trim()) && new URL(part.trim()).username !== "");
  return named ? [] : ["NATS_URL: must name this process's own NATS user and password in production (nats://<user>:<password>@host:4222)"];
}

/** parseConfig for a process entry point: a bad value stops the process with one clear line. */
export function loadConfig<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env, options: ConfigOptions = {}): z.infer<S> {
  try {
    return parseConfig(schema, env, options);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(78); // EX_CONFIG: tells a supervisor that restarting will not help
  }
}

/** A TCP port from the environment, as a string or number. */
export const portSchema = z.coerce.number().int().min(1).max(65535);
