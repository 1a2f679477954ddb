/** Test helpers: the rules' configuration as the service builds it from an environment. */
import { parseConfig } from "@vaultpay/kit";
import { fraudConfigSchema, rulesConfigFrom } from "./config.ts";
import type { RulesConfig, Transfer } from "./rules.ts";

/** The variables every subgraph needs; none of them matters to the rules. */
export const BASE_ENV = {
  PORT: "4004",
  DATABASE_URL: "postgres://u:p@127.0.0.1:5432/fraud",
  GATEWAY_SECRET: "g".repeat(32),
  AUTH_JWKS_URL: "http://127.0.0.1:4001/.well-known/jwks.json",
  REDIS_URL: "redis://127.0.0.1:6379",
} as const;

/** The defaults, or the given FRAUD_* variables on top of them. */
export function rulesConfigFromEnv(fraudEnv: Record<string, string> = {}): RulesConfig {
  return rulesConfigFrom(parseConfig(fraudConfigSchema, { ...BASE_ENV, ...fraudEnv }));
}

/** A transfer no rule fires on (given facts that know device d1 and payee b1), at 12:00 UTC. */
export function transferFixture(overrides: Partial<Transfer> = {}): Transfer {
  return {
    transferId: "t-now",
    userId: "u1",
    fromAccountId: "a1",
    toAccountId: "b1",
    amountMinor: 10_000n,
    currency: "INR",
    requestDeviceId: "d1",
    deviceProven: true,
    sessionDeviceId: "d1",
    initiatedAt: new Date("2026-11-25T12:00:00.000Z"),
    ...overrides,
  };
}
