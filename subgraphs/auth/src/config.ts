import { z } from "zod";
import { ConfigError } from "@vaultpay/kit";
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
      if (!parsed.success) issues.addIssue({ code: "custom", path: ["JWT_PRIVATE_JWK"], message: "must be an EC P-256 private JWK (kty, crv, x, y, d)" });
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

/**
 * Only a development notifier (the dev mailbox) exists. Production must not fall back to it —
 * codes would sit in Redis instead of reaching people — so it refuses to start until a real
 * sender (SMS / email provider) is wired in.
 */
export function assertNotifierAvailable(config: Pick<AuthConfig, "NODE_ENV">): void {
  if (config.NODE_ENV === "production") {
    throw new ConfigError("invalid configuration: no OTP notifier for production exists yet (the dev mailbox is refused in production)");
  }
}
