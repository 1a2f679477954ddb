import { z } from "zod";
import { minorUnits } from "@vaultpay/events";
import { subgraphConfigSchema } from "@vaultpay/service";
import type { RulesConfig } from "./rules.ts";

/** A rule's weight: what it adds to the risk score (0–100) when it fires; 0 switches it off. */
const weight = (fallback: number) => z.coerce.number().int().min(0).max(100).default(fallback);
/** An amount in minor units (paise), written as a decimal string; strictly positive. */
const amountMinor = (fallback: string) =>
  minorUnits
    .default(fallback)
    .transform((value) => BigInt(value))
    .refine((value) => value > 0n, "must be a positive amount in minor units");
const positiveInt = (fallback: number, max: number) => z.coerce.number().int().min(1).max(max).default(fallback);

function isTimeZone(value: string): boolean {
  try {
    new Intl.DateTimeFormat("en-CA", { timeZone: value });
    return true;
  } catch {
    return false;
  }
}

/**
 * The fraud rules' thresholds and weights, from the environment (README "Fraud rules"): changed by
 * restarting with new values, never by a code change. Defaults suit INR amounts in paise.
 */
export const fraudConfigSchema = subgraphConfigSchema
  .extend({
    /** A score at or above this fails the check. */
    FRAUD_FAIL_SCORE: z.coerce.number().int().min(1).max(100).default(60),
    FRAUD_HIGH_AMOUNT_WEIGHT: weight(50),
    FRAUD_HIGH_AMOUNT_MINOR: amountMinor("10000000"),
    FRAUD_UNUSUAL_AMOUNT_WEIGHT: weight(30),
    FRAUD_UNUSUAL_AMOUNT_MULTIPLIER: z.coerce.number().min(1).max(1000).default(5),
    FRAUD_UNUSUAL_AMOUNT_MIN_HISTORY: positiveInt(3, 1000),
    FRAUD_UNUSUAL_AMOUNT_SAMPLE_SIZE: positiveInt(20, 1000),
    FRAUD_VELOCITY_WEIGHT: weight(35),
    FRAUD_VELOCITY_WINDOW_SECONDS: positiveInt(600, 24 * 3600),
    FRAUD_VELOCITY_MAX_TRANSFERS: positiveInt(5, 10_000),
    FRAUD_VELOCITY_MAX_AMOUNT_MINOR: amountMinor("5000000"),
    FRAUD_UNKNOWN_DEVICE_WEIGHT: weight(30),
    FRAUD_DEVICE_MISMATCH_WEIGHT: weight(40),
    /** Alone it must stay under FRAUD_FAIL_SCORE: bearer clients (Sandbox, curl) move small sums. */
    FRAUD_UNPROVEN_DEVICE_WEIGHT: weight(25),
    FRAUD_NEW_PAYEE_WEIGHT: weight(15),
    FRAUD_DAILY_LIMIT_WEIGHT: weight(100),
    FRAUD_DAILY_LIMIT_MINOR: amountMinor("20000000"),
    FRAUD_DAILY_LIMIT_TIME_ZONE: z.string().refine(isTimeZone, "must be an IANA time zone, e.g. Asia/Kolkata").default("Asia/Kolkata"),
    /** Amount thresholds are in this currency's minor units; a transfer in another one fails closed. */
    FRAUD_CURRENCIES: z
      .string()
      .default("INR")
      .transform((value) => value.split(",").map((code) => code.trim()))
      .refine((codes) => codes.length > 0 && codes.every((code) => /^[A-Z]{3}$/.test(code)), "must be ISO 4217 codes, comma-separated"),
  })
  .superRefine((env, issues) => {
    if (env.FRAUD_UNUSUAL_AMOUNT_MIN_HISTORY > env.FRAUD_UNUSUAL_AMOUNT_SAMPLE_SIZE) {
      issues.addIssue({
        code: "custom",
        path: ["FRAUD_UNUSUAL_AMOUNT_MIN_HISTORY"],
        message: "must not exceed FRAUD_UNUSUAL_AMOUNT_SAMPLE_SIZE",
      });
    }
  });

export type FraudConfig = z.infer<typeof fraudConfigSchema>;

/** The rules' view of the configuration (no environment names inside the domain). */
export function rulesConfigFrom(config: FraudConfig): RulesConfig {
  return {
    failScore: config.FRAUD_FAIL_SCORE,
    highAmount: { weight: config.FRAUD_HIGH_AMOUNT_WEIGHT, thresholdMinor: config.FRAUD_HIGH_AMOUNT_MINOR },
    unusualAmount: {
      weight: config.FRAUD_UNUSUAL_AMOUNT_WEIGHT,
      multiplier: config.FRAUD_UNUSUAL_AMOUNT_MULTIPLIER,
      minHistory: config.FRAUD_UNUSUAL_AMOUNT_MIN_HISTORY,
      sampleSize: config.FRAUD_UNUSUAL_AMOUNT_SAMPLE_SIZE,
    },
    velocity: {
      weight: config.FRAUD_VELOCITY_WEIGHT,
      windowSeconds: config.FRAUD_VELOCITY_WINDOW_SECONDS,
      maxTransfers: config.FRAUD_VELOCITY_MAX_TRANSFERS,
      maxAmountMinor: config.FRAUD_VELOCITY_MAX_AMOUNT_MINOR,
    },
    unknownDevice: { weight: config.FRAUD_UNKNOWN_DEVICE_WEIGHT },
    deviceMismatch: { weight: config.FRAUD_DEVICE_MISMATCH_WEIGHT },
    unprovenDevice: { weight: config.FRAUD_UNPROVEN_DEVICE_WEIGHT },
    newPayee: { weight: config.FRAUD_NEW_PAYEE_WEIGHT },
    dailyLimit: {
      weight: config.FRAUD_DAILY_LIMIT_WEIGHT,
      limitMinor: config.FRAUD_DAILY_LIMIT_MINOR,
      timeZone: config.FRAUD_DAILY_LIMIT_TIME_ZONE,
    },
    currencies: config.FRAUD_CURRENCIES,
  };
}
