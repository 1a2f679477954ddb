import { z } from "zod";

/** Settings every VaultPay process understands; services extend this with their own. */
export const baseConfigSchema = z.object({
  NODE_ENV: z.enum(["development", "test", "production"]).default("development"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  NATS_URL: z.string().url().default("nats://127.0.0.1:4222"),
  /** Set by the local stack: the process ends when the stack does, even after a SIGKILL. */
  VAULTPAY_SUPERVISED: z.stringbool().default(false),
  /**
   * Schema introspection (and with it "Did you mean …?" hints in errors). Off in production
   * whatever this says; outside production on unless set to false (to try a production-like door).
   */
  GRAPHQL_INTROSPECTION: z.stringbool().optional(),
});

/** Whether clients may learn the schema: introspection, and the suggestions in error messages. */
export function introspectionEnabled(config: { NODE_ENV: string; GRAPHQL_INTROSPECTION?: boolean | undefined }): boolean {
  return config.NODE_ENV !== "production" && config.GRAPHQL_INTROSPECTION !== false;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Validates the environment once at start. The message names every bad variable on one line, so
 * an operator reading a crash loop sees the cause without a stack trace.
 */
export function parseConfig<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.join(".") || "(env)"}: ${issue.message}`);
  throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
}

/** parseConfig for a process entry point: a bad value stops the process with one clear line. */
export function loadConfig<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  try {
    return parseConfig(schema, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(78); // EX_CONFIG: tells a supervisor that restarting will not help
  }
}

/** A TCP port from the environment, as a string or number. */
export const portSchema = z.coerce.number().int().min(1).max(65535);
