/** `NODE_ENV=production pnpm start` refuses, in one line naming it, each missing or development setting. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "@vaultpay/kit";
import { productionStackConfig, productionStackSchema } from "./production.ts";
import { generateDevSecrets } from "./secrets.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "vaultpay-prod-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const complete: Record<string, string> = {
  ...generateDevSecrets(),
  DATABASE_URL: "postgres://vaultpay:pw@db.internal:5432/postgres",
  NATS_URL: "nats://nats.internal:4222",
  REDIS_URL: "redis://redis.internal:6379",
  ADMIN_EMAIL: "ops@bank.example",
  ADMIN_PASSWORD: "a real Passphrase 7",
  SMTP_HOST: "smtp.bank.example",
  SMTP_USER: "vaultpay",
  SMTP_PASSWORD: "smtp-password",
  SMTP_FROM: "VaultPay <no-reply@bank.example>",
};

function refusal(env: Record<string, string>, dataDir = dir): string {
  try {
    productionStackConfig(env, dataDir);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  return "";
}

describe("production stack configuration", () => {
  it("starts with everything given", () => {
    const { config, secrets } = productionStackConfig(complete, dir);
    expect(config.SMTP_HOST).toBe("smtp.bank.example");
    expect(secrets.OTP_PEPPER).toBe(complete.OTP_PEPPER);
  });

  it("refuses each missing variable by name, on one line, without printing any value", () => {
    for (const name of Object.keys(productionStackSchema.shape)) {
      const env = { ...complete };
      delete env[name];
      const message = refusal(env);
      expect(message, name).toMatch(new RegExp(`^invalid configuration: ${name}: is required in production`));
      expect(message.split("\n"), name).toHaveLength(1);
      for (const value of Object.values(complete)) expect(message).not.toContain(value);
    }
  });

  it("reads NAME_FILE, and refuses keys copied from the development data folder", () => {
    writeFileSync(path.join(dir, "pepper"), `${complete.OTP_PEPPER}\n`);
    const fromFile: Record<string, string> = { ...complete, OTP_PEPPER_FILE: path.join(dir, "pepper") };
    delete fromFile.OTP_PEPPER;
    expect(productionStackConfig(fromFile, dir).secrets.OTP_PEPPER).toBe(complete.OTP_PEPPER);

    const devDir = mkdtempSync(path.join(dir, "data-"));
    const dev = generateDevSecrets();
    writeFileSync(path.join(devDir, "dev-secrets.json"), JSON.stringify(dev));
    const message = refusal({ ...complete, GATEWAY_SECRET: dev.GATEWAY_SECRET, OTP_PEPPER: dev.OTP_PEPPER }, devDir);
    expect(message).toMatch(
      /^invalid configuration: GATEWAY_SECRET: is the development value from .*dev-secrets\.json; OTP_PEPPER: is the development value/,
    );
    expect(message).not.toContain(dev.OTP_PEPPER);
  });
});
