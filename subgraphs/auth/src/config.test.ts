/** Start-up configuration: development defaults, production refusals. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "@vaultpay/kit";
import { generateDevSecrets } from "@vaultpay/stack";
import { DEV_ADMIN_EMAIL, DEV_ADMIN_PASSWORD, authConfigSchema } from "./config.ts";

const secrets = generateDevSecrets();
const base = {
  ...secrets,
  PORT: "4001",
  DATABASE_URL: "postgres://u:p@127.0.0.1:5432/vaultpay_auth",
  REDIS_URL: "redis://127.0.0.1:6379",
  AUTH_JWKS_URL: "http://127.0.0.1:4001/.well-known/jwks.json",
};

/** A production environment that starts: every secret and the SMTP sender given. */
const production = {
  ...base,
  NODE_ENV: "production",
  NATS_URL: "nats://auth:nats-password@127.0.0.1:4222",
  ADMIN_EMAIL: "ops@bank.example",
  ADMIN_PASSWORD: "a real Passphrase 7",
  SMTP_HOST: "smtp.bank.example",
  SMTP_USER: "vaultpay",
  SMTP_PASSWORD: "smtp-password",
  SMTP_FROM: "VaultPay <no-reply@bank.example>",
};

function problems(env: NodeJS.ProcessEnv): string {
  try {
    parseConfig(authConfigSchema, env, { process: true });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  return "";
}

describe("auth configuration", () => {
  it("outside production uses the documented admin defaults", () => {
    const config = parseConfig(authConfigSchema, { ...base, NODE_ENV: "development" });
    expect(config.ADMIN_EMAIL).toBe(DEV_ADMIN_EMAIL);
    expect(config.ADMIN_PASSWORD).toBe(DEV_ADMIN_PASSWORD);
    expect(parseConfig(authConfigSchema, { ...base, ADMIN_EMAIL: " Boss@Example.com " }).ADMIN_EMAIL).toBe("boss@example.com");
  });

  it("in production refuses to start without an admin, or with the development one", () => {
    const missing = problems({ ...base, NODE_ENV: "production" });
    expect(missing).toMatch(/^invalid configuration: /);
    expect(missing).toContain("ADMIN_EMAIL: is required in production");
    expect(missing).toContain("ADMIN_PASSWORD: is required in production");
    expect(missing.split("\n")).toHaveLength(1);
    expect(missing).toContain("NATS_URL: must name this process's own NATS user");
    expect(problems(production)).toBe("");
    const defaults = problems({ ...base, NODE_ENV: "production", ADMIN_EMAIL: DEV_ADMIN_EMAIL, ADMIN_PASSWORD: DEV_ADMIN_PASSWORD });
    expect(defaults).toContain("ADMIN_EMAIL: must not be the development default");
    expect(defaults).toContain("ADMIN_PASSWORD: must not be the development default");
    expect(problems({ ...base, NODE_ENV: "production", ADMIN_EMAIL: "ops@bank.example", ADMIN_PASSWORD: "short" })).toContain(
      "ADMIN_PASSWORD: Password must be at least 12",
    );
    expect(problems({ ...base, NODE_ENV: "production", ADMIN_EMAIL: "ops@bank.example", ADMIN_PASSWORD: "Password1234!" })).toContain(
      "ADMIN_PASSWORD: This password is too easy to guess",
    );
    expect(problems({ ...base, NODE_ENV: "production", ADMIN_EMAIL: "ops@bank.example", ADMIN_PASSWORD: "ops@bank.example1" })).toContain(
      "ADMIN_PASSWORD: This password is too easy to guess",
    );
    expect(problems(production)).toBe("");
  });

  it("refuses to start without the signing key, OTP pepper or encryption keys", () => {
    for (const key of [
      "JWT_PRIVATE_JWK",
      "JWT_KEY_ID",
      "OTP_PEPPER",
      "ENCRYPTION_KEYS",
      "BLIND_INDEX_KEY",
      "REDIS_URL",
      "GATEWAY_SECRET",
    ] as const) {
      const env: Record<string, string> = {
        ...base,
        NODE_ENV: "production",
        NATS_URL: production.NATS_URL,
        ADMIN_EMAIL: "ops@bank.example",
        ADMIN_PASSWORD: "a real Passphrase 7",
      };
      delete env[key];
      expect(problems(env), key).toContain(`${key}:`);
    }
    expect(problems({ ...base, JWT_PRIVATE_JWK: "{not json" })).toContain("JWT_PRIVATE_JWK: must be a JSON JWK");
    const publicOnly = JSON.stringify({ ...JSON.parse(secrets.JWT_PRIVATE_JWK), d: undefined });
    expect(problems({ ...base, JWT_PRIVATE_JWK: publicOnly })).toContain("JWT_PRIVATE_JWK: must be an EC P-256 private JWK");
    expect(problems({ ...base, JWT_KEY_ID: "other-kid" })).toContain("JWT_KEY_ID: does not match");
    expect(problems({ ...base, OTP_PEPPER: "short" })).toContain("OTP_PEPPER");
  });

  it("in production refuses each missing sender setting or secret by name, on one line", () => {
    expect(problems(production)).toBe("");
    for (const key of [
      "SMTP_HOST",
      "SMTP_USER",
      "SMTP_PASSWORD",
      "SMTP_FROM",
      "JWT_PRIVATE_JWK",
      "OTP_PEPPER",
      "ENCRYPTION_KEYS",
      "BLIND_INDEX_KEY",
      "GATEWAY_SECRET",
    ] as const) {
      const env: Record<string, string> = { ...production };
      delete env[key];
      const message = problems(env);
      expect(message, key).toMatch(new RegExp(`^invalid configuration: (.*; )?${key}: `));
      expect(message.split("\n"), key).toHaveLength(1);
    }
    expect(problems({ ...production, SMTP_TLS: "none" })).toContain("SMTP_TLS: must be starttls or implicit in production");
    expect(problems({ ...production, SMS_PROVIDER_URL: "https://sms.example/send" })).toContain("SMS_SIGNING_SECRET: is required");
    expect(problems({ ...production, SMS_PROVIDER_URL: "http://sms.example/send", SMS_SIGNING_SECRET: "k".repeat(32) })).toContain(
      "SMS_PROVIDER_URL: must be https://",
    );
    // Outside production the dev mailbox is enough; a half-configured SMTP is still refused.
    expect(problems({ ...base, NODE_ENV: "development" })).toBe("");
    expect(problems({ ...base, SMTP_HOST: "127.0.0.1" })).toContain("SMTP_FROM: is required with SMTP_HOST");
  });

  it("takes secrets from NAME_FILE and never prints their contents", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "auth-secrets-"));
    try {
      writeFileSync(path.join(dir, "smtp"), "from-a-file\n");
      const env: Record<string, string> = { ...production, SMTP_PASSWORD_FILE: path.join(dir, "smtp") };
      delete env.SMTP_PASSWORD;
      expect(parseConfig(authConfigSchema, env).SMTP_PASSWORD).toBe("from-a-file");
      writeFileSync(path.join(dir, "pepper"), "too-short-pepper\n");
      const weak: Record<string, string> = { ...production, OTP_PEPPER_FILE: path.join(dir, "pepper") };
      delete weak.OTP_PEPPER;
      const message = problems(weak);
      expect(message).toContain("OTP_PEPPER: ");
      expect(message).not.toContain("too-short-pepper");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
