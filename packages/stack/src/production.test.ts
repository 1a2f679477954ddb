/** `NODE_ENV=production pnpm start` refuses, in one line naming it, each missing or development setting. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { NATS_SERVICE_USERS, natsServers } from "@vaultpay/events";
import { ConfigError } from "@vaultpay/kit";
import { productionStackConfig, productionStackSchema } from "./production.ts";
import { generateDevSecrets } from "./secrets.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "vaultpay-prod-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const natsPasswords = Object.fromEntries(NATS_SERVICE_USERS.map((user) => [user, randomBytes(24).toString("base64url")]));

const complete: Record<string, string> = {
  ...generateDevSecrets(),
  NATS_PASSWORDS: JSON.stringify(natsPasswords),
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

  it("gives each process the NATS servers as its own user, and refuses a shared user or a missing password without printing any", () => {
    const { natsUrlFor } = productionStackConfig({ ...complete, NATS_URL: "nats://n1.internal:4222, nats://n2.internal:4222" }, dir);
    for (const user of NATS_SERVICE_USERS) {
      expect(natsServers(natsUrlFor(user))).toEqual({
        servers: ["nats://n1.internal:4222", "nats://n2.internal:4222"],
        user,
        pass: natsPasswords[user],
      });
    }
    expect(refusal({ ...complete, NATS_URL: "nats://vaultpay:pw@nats.internal:4222" })).toMatch(
      /^invalid configuration: NATS_URL: must name no user/,
    );
    const { fraud: _fraud, ...withoutFraud } = natsPasswords;
    const missing = refusal({ ...complete, NATS_PASSWORDS: JSON.stringify({ ...withoutFraud, gateway: "short" }) });
    expect(missing).toContain("NATS_PASSWORDS.fraud: needs fraud's password");
    expect(missing).toContain("NATS_PASSWORDS.gateway: gateway's is shorter than 16 characters");
    expect(refusal({ ...complete, NATS_PASSWORDS: "auth=x" })).toContain("NATS_PASSWORDS: must be a JSON object");
    for (const password of Object.values(natsPasswords)) expect(missing).not.toContain(password);
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
