import { z } from "zod";
import { portSchema } from "@vaultpay/kit";
import { keyRingEnvSchema } from "@vaultpay/crypto";
import { subgraphConfigSchema } from "@vaultpay/service";
import { checkPasswordPolicy, normalizeEmail, personalInputs } from "./validation.ts";

/**
 * The development administrator (README quick start). Production refuses these values, and
 * refuses to start without its own ADMIN_EMAIL / ADMIN_PASSWORD.
 */
export const DEV_ADMIN_EMAIL = "admin@vaultpay.local";
export const DEV_ADMIN_PASSWORD = "VaultPay-dev-admin-1";

const jwkSchema = z.object({
  kty: z.literal("EC"),
  crv: z.literal("P-256"),
  x: z.string().min(1),
  y: z.string().min(1),
  d: z.string().min(1),
  kid: z.string().optional(),
});

export const authConfigSchema = subgraphConfigSchema
  .extend(keyRingEnvSchema.shape)
  .extend({
    REDIS_URL: z.string().url(),
    /** ES256 private key as a JWK (JSON); the public half is served as JWKS. */
    JWT_PRIVATE_JWK: z.string().min(1),
    JWT_KEY_ID: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "JWT_KEY_ID must be 1–64 of A-Z a-z 0-9 . _ -"),
    /** HMAC key for OTP hashes in Redis: a Redis dump alone does not reveal codes. */
    OTP_PEPPER: z.string().min(32, "OTP_PEPPER must be at least 32 characters"),
    /** How long a rotated refresh token may be presented again (two tabs) before it counts as reuse. */
    REFRESH_REUSE_GRACE_SECONDS: z.coerce.number().int().min(0).max(60).default(10),
    ADMIN_EMAIL: z.string().optional(),
    ADMIN_PASSWORD: z.string().optional(),
    /** Email over SMTP (notifiers.ts). Required in production; outside it, the dev mailbox suffices. */
    SMTP_HOST: z.string().min(1).optional(),
    SMTP_PORT: portSchema.default(587),
    SMTP_TLS: z.enum(["starttls", "implicit", "none"]).default("starttls"),
    SMTP_USER: z.string().min(1).optional(),
    SMTP_PASSWORD: z.string().min(1).optional(),
    SMTP_FROM: z.string().min(3).optional(),
    /** PEM of a private CA that signed the SMTP server's certificate (system CAs otherwise). */
    SMTP_CA_FILE: z.string().min(1).optional(),
    SMTP_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
    SMTP_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(5).default(2),
    /** SMS through an HTTPS provider (notifiers.ts); optional — without it, notices go by email only. */
    SMS_PROVIDER_URL: z.string().url().optional(),
    SMS_SIGNING_SECRET: z.string().min(32, "SMS_SIGNING_SECRET must be at least 32 characters").optional(),
    SMS_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5_000),
    SMS_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(5).default(3),
    /** Backoff before the second attempt of either sender; doubled after each. */
    NOTIFIER_RETRY_BACKOFF_MS: z.coerce.number().int().min(0).max(10_000).default(250),
  })
  .superRefine((env, issues) => {
    const production = env.NODE_ENV === "production";
    let jwk: unknown;
    try {
      jwk = JSON.parse(env.JWT_PRIVATE_JWK);
    } catch {
      issues.addIssue({ code: "custom", path: ["JWT_PRIVATE_JWK"], message: "must be a JSON JWK" });
    }
    if (jwk !== undefined) {
      const parsed = jwkSchema.safeParse(jwk);
      if (!parsed.success)
        issues.addIssue({ code: "custom", path: ["JWT_PRIVATE_JWK"], message: "must be an EC P-256 private JWK (kty, crv, x, y, d)" });
      else if (parsed.data.kid !== undefined && parsed.data.kid !== env.JWT_KEY_ID) {
        issues.addIssue({ code: "custom", path: ["JWT_KEY_ID"], message: "does not match the kid of JWT_PRIVATE_JWK" });
      }
    }
    if (production) {
      if (!env.ADMIN_EMAIL) issues.addIssue({ code: "custom", path: ["ADMIN_EMAIL"], message: "is required in production" });
      if (!env.ADMIN_PASSWORD) issues.addIssue({ code: "custom", path: ["ADMIN_PASSWORD"], message: "is required in production" });
      if (env.ADMIN_EMAIL && normalizeEmail(env.ADMIN_EMAIL) === DEV_ADMIN_EMAIL) {
        issues.addIssue({ code: "custom", path: ["ADMIN_EMAIL"], message: "must not be the development default in production" });
      }
      if (env.ADMIN_PASSWORD === DEV_ADMIN_PASSWORD) {
        issues.addIssue({ code: "custom", path: ["ADMIN_PASSWORD"], message: "must not be the development default in production" });
      }
    }
    for (const problem of notifierProblems(env)) issues.addIssue({ code: "custom", path: [problem.variable], message: problem.message });
    if (env.ADMIN_PASSWORD) {
      const problem = checkPasswordPolicy(env.ADMIN_PASSWORD, personalInputs({ email: env.ADMIN_EMAIL ?? DEV_ADMIN_EMAIL }));
      if (problem) issues.addIssue({ code: "custom", path: ["ADMIN_PASSWORD"], message: problem });
    }
  })
  .transform((env) => ({
    ...env,
    ADMIN_EMAIL: normalizeEmail(env.ADMIN_EMAIL ?? DEV_ADMIN_EMAIL),
    ADMIN_PASSWORD: env.ADMIN_PASSWORD ?? DEV_ADMIN_PASSWORD,
  }));

export type AuthConfig = z.infer<typeof authConfigSchema>;

interface NotifierEnv {
  NODE_ENV: string;
  SMTP_HOST?: string | undefined;
  SMTP_TLS: string;
  SMTP_USER?: string | undefined;
  SMTP_PASSWORD?: string | undefined;
  SMTP_FROM?: string | undefined;
  SMS_PROVIDER_URL?: string | undefined;
  SMS_SIGNING_SECRET?: string | undefined;
}

/**
 * Production has no dev mailbox, so codes must reach people: SMTP over TLS with a login and a
 * from-address is required there. SMS is optional, but when configured it must be signed (and over
 * HTTPS in production: the body holds phone numbers).
 */
function notifierProblems(env: NotifierEnv): Array<{ variable: string; message: string }> {
  const problems: Array<{ variable: string; message: string }> = [];
  const production = env.NODE_ENV === "production";
  const need = (variable: keyof NotifierEnv, why: string) => {
    if (!env[variable]) problems.push({ variable, message: why });
  };
  if (production) {
    need("SMTP_HOST", "is required in production (OTP codes are sent by email)");
    need("SMTP_USER", "is required in production");
    need("SMTP_PASSWORD", "is required in production");
    if (env.SMTP_TLS === "none") problems.push({ variable: "SMTP_TLS", message: "must be starttls or implicit in production" });
  }
  if (env.SMTP_HOST || production) need("SMTP_FROM", "is required with SMTP_HOST");
  if (env.SMTP_USER && !env.SMTP_PASSWORD && !production) need("SMTP_PASSWORD", "is required with SMTP_USER");
  if (env.SMS_PROVIDER_URL) {
    need("SMS_SIGNING_SECRET", "is required with SMS_PROVIDER_URL");
    if (production && !env.SMS_PROVIDER_URL.startsWith("https://"))
      problems.push({ variable: "SMS_PROVIDER_URL", message: "must be https:// in production" });
  }
  return problems;
}
