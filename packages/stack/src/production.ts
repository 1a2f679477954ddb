import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import { NATS_SERVICE_USERS, natsUrlAs, type NatsServiceUser } from "@vaultpay/events";
import { ConfigError, natsUrlSchema, parseConfig } from "@vaultpay/kit";
import type { DevSecrets } from "./secrets.ts";

/**
 * What `NODE_ENV=production pnpm start` must be given before anything starts: the infrastructure
 * (nothing embedded: data must live where the operator backs it up), every key (never generated:
 * a restart with new keys would lock the data away), the administrator and the mail sender. Each
 * may come as NAME or NAME_FILE (kit's config loading). The services validate their own settings
 * again; this check exists so one line names everything missing before any process starts.
 */
const required = () => z.string({ error: "is required in production" }).min(1, "is required in production");

/**
 * Each process's NATS password, as a JSON object by user (`{"auth": "…", "accounts": "…", …}`): the
 * NATS server holds the same users with their permissions (README "NATS users"), and each process
 * is given NATS_URL as its own user, so it can publish only its own service's events.
 */
const natsPasswordsSchema = required()
  .transform((text, context) => {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      context.addIssue({ code: "custom", message: "must be a JSON object of each service's NATS password" });
      return z.NEVER;
    }
  })
  .pipe(
    z.object(
      Object.fromEntries(
        NATS_SERVICE_USERS.map((user) => [
          user,
          z.string({ error: `needs ${user}'s password` }).min(16, `${user}'s is shorter than 16 characters`),
        ]),
      ) as Record<NatsServiceUser, z.ZodString>,
    ),
  );

export const productionStackSchema = z.object({
  DATABASE_URL: required().pipe(z.url()),
  // The servers only: the stack names each process's own user (NATS_PASSWORDS).
  NATS_URL: required()
    .pipe(natsUrlSchema())
    .refine(
      (url) => url.split(",").every((part) => new URL(part.trim()).username === ""),
      "must name no user (each process gets its own from NATS_PASSWORDS)",
    ),
  NATS_PASSWORDS: natsPasswordsSchema,
  REDIS_URL: required().pipe(z.url()),
  GATEWAY_SECRET: required(),
  JWT_PRIVATE_JWK: required(),
  JWT_KEY_ID: required(),
  ENCRYPTION_KEYS: required(),
  ENCRYPTION_ACTIVE_KEY_ID: required(),
  BLIND_INDEX_KEY: required(),
  OTP_PEPPER: required(),
  ADMIN_EMAIL: required(),
  ADMIN_PASSWORD: required(),
  SMTP_HOST: required(),
  SMTP_USER: required(),
  SMTP_PASSWORD: required(),
  SMTP_FROM: required(),
});

export type ProductionStackConfig = z.infer<typeof productionStackSchema>;

const SECRET_NAMES = [
  "GATEWAY_SECRET",
  "JWT_PRIVATE_JWK",
  "JWT_KEY_ID",
  "ENCRYPTION_KEYS",
  "ENCRYPTION_ACTIVE_KEY_ID",
  "BLIND_INDEX_KEY",
  "OTP_PEPPER",
] as const satisfies readonly (keyof DevSecrets)[];

/**
 * The production configuration of the stack, or a ConfigError naming every variable that is
 * missing or still holds a development value: a key equal to the one `pnpm start` generated into
 * the data folder's dev-secrets.json (copied from a laptop), or the documented dev administrator.
 * Only names are reported, never values.
 */
export function productionStackConfig(
  env: NodeJS.ProcessEnv,
  dataDir: string,
): { config: ProductionStackConfig; secrets: DevSecrets; natsUrlFor: (user: NatsServiceUser) => string } {
  let config: ProductionStackConfig;
  const devFile = path.join(dataDir, "dev-secrets.json");
  const dev = existsSync(devFile) ? (JSON.parse(readFileSync(devFile, "utf8")) as Partial<DevSecrets>) : {};
  try {
    config = parseConfig(productionStackSchema, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(`${error.message} (NODE_ENV=production starts nothing embedded or generated; NAME_FILE works for each)`);
  }
  const stale = SECRET_NAMES.filter((name) => dev[name] !== undefined && dev[name] === config[name] && name !== "ENCRYPTION_ACTIVE_KEY_ID");
  if (stale.length > 0) {
    throw new ConfigError(`invalid configuration: ${stale.map((name) => `${name}: is the development value from ${devFile}`).join("; ")}`);
  }
  const secrets = Object.fromEntries(SECRET_NAMES.map((name) => [name, config[name]])) as unknown as DevSecrets;
  const natsUrlFor = (user: NatsServiceUser) =>
    config.NATS_URL.split(",")
      .map((server) => natsUrlAs(server.trim(), user, config.NATS_PASSWORDS[user]))
      .join(",");
  return { config, secrets, natsUrlFor };
}
