import { describe, expect, it } from "vitest";
import { parseConfig } from "@vaultpay/kit";
import { fraudConfigSchema } from "./config.ts";
import { BASE_ENV, rulesConfigFromEnv, transferFixture } from "./testing.ts";
import {
  calendarDay,
  dailyLimit,
  deviceMismatch,
  RULES,
  highAmount,
  medianMinor,
  newPayee,
  score,
  unknownDevice,
  unprovenDevice,
  unusualAmount,
  velocity,
  type Facts,
  type PastTransfer,
  type RuleResult,
  type RulesConfig,
} from "./rules.ts";

const env = BASE_ENV;

/** The defaults, as the service starts without any FRAUD_* variable. */
const defaults: RulesConfig = rulesConfigFromEnv();

const at = (iso: string) => new Date(iso);

const transfer = transferFixture;

function past(overrides: Partial<PastTransfer> = {}): PastTransfer {
  return {
    transferId: `t-${Math.random()}`,
    userId: "u1",
    fromAccountId: "a1",
    toAccountId: "b1",
    amountMinor: 10_000n,
    initiatedAt: at("2026-11-25T11:59:00.000Z"),
    passed: true,
    ...overrides,
  };
}

function facts(overrides: Partial<Facts> = {}): Facts {
  return { nearby: [], recentPassedAmountsMinor: [], paidPayeeBefore: true, knownDeviceIds: ["d1"], ...overrides };
}

describe("configuration", () => {
  it("has documented defaults", () => {
    expect(defaults).toMatchObject({
      failScore: 60,
      highAmount: { weight: 50, thresholdMinor: 10_000_000n },
      unusualAmount: { weight: 30, multiplier: 5, minHistory: 3, sampleSize: 20 },
      velocity: { weight: 35, windowSeconds: 600, maxTransfers: 5, maxAmountMinor: 5_000_000n },
      unknownDevice: { weight: 30 },
      deviceMismatch: { weight: 40 },
      newPayee: { weight: 15 },
      dailyLimit: { weight: 100, limitMinor: 20_000_000n, timeZone: "Asia/Kolkata" },
      currencies: ["INR"],
      historyMaxRows: 2_000,
    });
  });

  it("takes thresholds and weights from the environment and refuses bad values on one line", () => {
    const custom = rulesConfigFromEnv({
      FRAUD_FAIL_SCORE: "80",
      FRAUD_HIGH_AMOUNT_MINOR: "500",
      FRAUD_DAILY_LIMIT_TIME_ZONE: "Europe/Berlin",
      FRAUD_CURRENCIES: "INR, EUR",
    });
    expect(custom.failScore).toBe(80);
    expect(custom.highAmount.thresholdMinor).toBe(500n);
    expect(custom.dailyLimit.timeZone).toBe("Europe/Berlin");
    expect(custom.currencies).toEqual(["INR", "EUR"]);
    expect(() =>
      parseConfig(fraudConfigSchema, {
        ...env,
        FRAUD_FAIL_SCORE: "0",
        FRAUD_HIGH_AMOUNT_MINOR: "12.5",
        FRAUD_DAILY_LIMIT_TIME_ZONE: "Mars/Olympus",
        FRAUD_NEW_PAYEE_WEIGHT: "101",
      }),
    ).toThrow(/FRAUD_FAIL_SCORE: .*; FRAUD_HIGH_AMOUNT_MINOR: .*; FRAUD_NEW_PAYEE_WEIGHT: .*; FRAUD_DAILY_LIMIT_TIME_ZONE: /);
    expect(() => parseConfig(fraudConfigSchema, { ...env, FRAUD_VELOCITY_MAX_AMOUNT_MINOR: "0" })).toThrow(
      /FRAUD_VELOCITY_MAX_AMOUNT_MINOR/,
    );
    expect(() => parseConfig(fraudConfigSchema, { ...env, FRAUD_UNUSUAL_AMOUNT_MIN_HISTORY: "30" })).toThrow(
      /FRAUD_UNUSUAL_AMOUNT_MIN_HISTORY/,
    );
  });
});

describe("high amount", () => {
  const config = { ...defaults, highAmount: { weight: 50, thresholdMinor: 1_000n } };
  it("fires only strictly over the threshold", () => {
    expect(highAmount.evaluate(transfer({ amountMinor: 1_000n }), facts(), config).fired).toBe(false);
    const over = highAmount.evaluate(transfer({ amountMinor: 1_001n }), facts(), config);
    expect(over).toMatchObject({ rule: "high-amount", fired: true, weight: 50 });
    expect(over.reason).toContain("1001");
  });
});

describe("unusual amount", () => {
  const config = { ...defaults, unusualAmount: { weight: 30, multiplier: 5, minHistory: 3, sampleSize: 20 } };
  it("takes the median of integer amounts", () => {
    expect(medianMinor([5n, 1n, 3n])).toBe(3n);
    expect(medianMinor([4n, 1n, 3n, 100n])).toBe(3n); // (3 + 4) / 2, rounded down
  });

  it("fires strictly over multiplier × the median", () => {
    const usual = facts({ recentPassedAmountsMinor: [1_000n, 2_000n, 3_000n] });
    expect(unusualAmount.evaluate(transfer({ amountMinor: 10_000n }), usual, config).fired).toBe(false);
    const over = unusualAmount.evaluate(transfer({ amountMinor: 10_001n }), usual, config);
    expect(over.fired).toBe(true);
    expect(over.detail).toEqual({ sampleSize: 3, medianMinor: "2000" });
  });

  it("stays quiet until the user has enough history, and reads only the sample", () => {
    expect(unusualAmount.evaluate(transfer({ amountMinor: 1_000_000n }), facts({ recentPassedAmountsMinor: [1n, 1n] }), config).fired).toBe(
      false,
    );
    expect(
      unusualAmount.evaluate(transfer({ amountMinor: 1_000_000n }), facts({ recentPassedAmountsMinor: [1n, 1n, 1n] }), config).fired,
    ).toBe(true);
    const small = { ...config, unusualAmount: { ...config.unusualAmount, sampleSize: 3 } };
    // The 4th (older) amount is outside the sample, so the median is 1, not 1 000 000.
    expect(
      unusualAmount.evaluate(transfer({ amountMinor: 6n }), facts({ recentPassedAmountsMinor: [1n, 1n, 1n, 1_000_000n] }), small).fired,
    ).toBe(true);
  });

  it("honours a fractional multiplier without floats on amounts", () => {
    const half = { ...config, unusualAmount: { ...config.unusualAmount, multiplier: 2.5 } };
    const usual = facts({ recentPassedAmountsMinor: [100n, 100n, 100n] });
    expect(unusualAmount.evaluate(transfer({ amountMinor: 250n }), usual, half).fired).toBe(false);
    expect(unusualAmount.evaluate(transfer({ amountMinor: 251n }), usual, half).fired).toBe(true);
  });
});

describe("velocity", () => {
  const config = { ...defaults, velocity: { weight: 35, windowSeconds: 600, maxTransfers: 3, maxAmountMinor: 100_000n } };
  const now = transfer().initiatedAt.getTime();
  const ago = (seconds: number) => new Date(now - seconds * 1000);

  it("fires past the maximum count, counting the transfer itself", () => {
    const two = facts({ nearby: [past({ initiatedAt: ago(10) }), past({ initiatedAt: ago(20) })] });
    expect(velocity.evaluate(transfer(), two, config).fired).toBe(false); // 3 of max 3
    const three = facts({ nearby: [...two.nearby, past({ initiatedAt: ago(30) })] });
    const fired = velocity.evaluate(transfer(), three, config);
    expect(fired.fired).toBe(true);
    expect(fired.reason).toContain("4 transfers by this user (max 3)");
  });

  it("counts transfers less than the window apart, either side, and not one exactly a window apart", () => {
    const edge = facts({ nearby: [past({ initiatedAt: ago(600) }), past({ initiatedAt: ago(600) }), past({ initiatedAt: ago(600) })] });
    expect(velocity.evaluate(transfer(), edge, config).fired).toBe(false);
    const inside = facts({
      nearby: [past({ initiatedAt: ago(599.999) }), past({ initiatedAt: ago(-599) }), past({ initiatedAt: ago(0) })],
    });
    expect(velocity.evaluate(transfer(), inside, config).detail).toMatchObject({ userCount: 4 });
  });

  it("fires when the money in the window passes the maximum", () => {
    const sent = facts({ nearby: [past({ amountMinor: 60_000n, initiatedAt: ago(60) })] });
    expect(velocity.evaluate(transfer({ amountMinor: 40_000n }), sent, config).fired).toBe(false); // exactly 100 000
    const over = velocity.evaluate(transfer({ amountMinor: 40_001n }), sent, config);
    expect(over.fired).toBe(true);
    expect(over.reason).toContain("100001 sent by this user (max 100000)");
  });

  it("counts attempts whatever their verdict, per user and per source account", () => {
    const refused = facts({ nearby: [1, 2, 3].map((i) => past({ passed: false, initiatedAt: ago(i) })) });
    expect(velocity.evaluate(transfer(), refused, config).fired).toBe(true);
    // Another user's transfers from the same account (the history query reads both) count for the account only.
    const shared = facts({ nearby: [1, 2, 3].map((i) => past({ userId: "u2", initiatedAt: ago(i) })) });
    const result = velocity.evaluate(transfer(), shared, config);
    expect(result.detail).toMatchObject({ userCount: 1, accountCount: 4 });
    expect(result.reason).toContain("by this account");
  });
});

describe("devices", () => {
  it("unknown device: the request's device must be one auth registered for the user", () => {
    expect(unknownDevice.evaluate(transfer(), facts({ knownDeviceIds: ["d1"] }), defaults).fired).toBe(false);
    expect(
      unknownDevice.evaluate(transfer({ requestDeviceId: "d2", sessionDeviceId: "d2" }), facts({ knownDeviceIds: ["d1"] }), defaults).fired,
    ).toBe(true);
    expect(unknownDevice.evaluate(transfer(), facts({ knownDeviceIds: [] }), defaults).fired).toBe(true);
    // Without a request device, the session's device is the one checked.
    expect(unknownDevice.evaluate(transfer({ requestDeviceId: null }), facts({ knownDeviceIds: ["d1"] }), defaults).fired).toBe(false);
  });

  it("device mismatch: request and session devices must be the same and present", () => {
    expect(deviceMismatch.evaluate(transfer(), facts(), defaults).fired).toBe(false);
    expect(deviceMismatch.evaluate(transfer({ requestDeviceId: "d2" }), facts(), defaults).reason).toBe(
      "The transfer request came from a different device than the signed-in session",
    );
    expect(deviceMismatch.evaluate(transfer({ requestDeviceId: null }), facts(), defaults).reason).toBe(
      "The transfer request carried no device id",
    );
  });
});

describe("unproven devices (bearer sessions, no DPoP proof)", () => {
  const scoreOf = (t: ReturnType<typeof transfer>, f: Facts) =>
    score(
      RULES.map((rule) => rule.evaluate(t, f, defaults)),
      defaults.failScore,
    );

  it("never trusts the claimed x-device-id: a forged header matching the session is still unproven", () => {
    // The thief copies the token's did into x-device-id: before DPoP this scored 0.
    const forged = transfer({ requestDeviceId: "d1", sessionDeviceId: "d1", deviceProven: false });
    expect(unprovenDevice.evaluate(forged, facts(), defaults)).toMatchObject({ fired: true, weight: 25 });
    // Claimed ids are not looked up or compared: whatever was typed cannot clear or trip those rules.
    expect(unknownDevice.evaluate(transfer({ requestDeviceId: "d9", deviceProven: false }), facts(), defaults).fired).toBe(false);
    expect(deviceMismatch.evaluate(transfer({ requestDeviceId: "d9", deviceProven: false }), facts(), defaults).fired).toBe(false);
    expect(unprovenDevice.evaluate(transfer(), facts(), defaults).fired).toBe(false);
  });

  it("alone (even with a new payee) passes a small transfer; with a new payee and a high amount it fails", () => {
    const small = transfer({ deviceProven: false, amountMinor: 25_000n });
    expect(scoreOf(small, facts())).toMatchObject({ riskScore: 25, passed: true });
    expect(scoreOf(small, facts({ paidPayeeBefore: false }))).toMatchObject({ riskScore: 40, passed: true });
    const takeover = transfer({ deviceProven: false, amountMinor: 15_000_000n });
    const verdict = scoreOf(takeover, facts({ paidPayeeBefore: false }));
    expect(verdict.passed).toBe(false);
    expect(verdict.reasons).toContain("The request did not prove its device");
    // Unusual (30) + new payee (15) passes from a proven device (45) and fails unproven (70).
    const unusual = { paidPayeeBefore: false, recentPassedAmountsMinor: [10_000n, 10_000n, 10_000n] };
    expect(scoreOf(transfer({ amountMinor: 60_000n }), facts(unusual))).toMatchObject({ riskScore: 45, passed: true });
    expect(scoreOf(transfer({ amountMinor: 60_000n, deviceProven: false }), facts(unusual))).toMatchObject({
      riskScore: 70,
      passed: false,
    });
  });

  it("is weighted by FRAUD_UNPROVEN_DEVICE_WEIGHT (0 switches it off)", () => {
    expect(rulesConfigFromEnv({ FRAUD_UNPROVEN_DEVICE_WEIGHT: "10" }).unprovenDevice.weight).toBe(10);
    const off = rulesConfigFromEnv({ FRAUD_UNPROVEN_DEVICE_WEIGHT: "0" });
    expect(score([unprovenDevice.evaluate(transfer({ deviceProven: false }), facts(), off)], off.failScore).riskScore).toBe(0);
  });
});

describe("new payee", () => {
  it("fires for the first transfer to a destination and not for the second", () => {
    expect(newPayee.evaluate(transfer(), facts({ paidPayeeBefore: false }), defaults).fired).toBe(true);
    expect(newPayee.evaluate(transfer(), facts({ paidPayeeBefore: true }), defaults).fired).toBe(false);
  });
});

describe("daily limit", () => {
  const config = { ...defaults, dailyLimit: { weight: 100, limitMinor: 1_000n, timeZone: "Asia/Kolkata" } };

  it("knows the calendar day in the configured zone", () => {
    // 18:29:59.999 UTC is 23:59:59.999 in Kolkata (UTC+05:30); a millisecond later is the next day.
    expect(calendarDay(at("2026-11-25T18:29:59.999Z"), "Asia/Kolkata")).toBe("2026-11-25");
    expect(calendarDay(at("2026-11-25T18:30:00.000Z"), "Asia/Kolkata")).toBe("2026-11-26");
    expect(calendarDay(at("2026-11-25T18:30:00.000Z"), "UTC")).toBe("2026-11-25");
  });

  it("sums the user's passed transfers of the same day in the zone, strictly over the limit fires", () => {
    const late = at("2026-11-25T18:29:00.000Z"); // 23:59 in Kolkata
    const earlierToday = facts({ nearby: [past({ amountMinor: 600n, initiatedAt: at("2026-11-24T18:30:00.000Z") })] }); // 00:00 the same Kolkata day
    expect(dailyLimit.evaluate(transfer({ amountMinor: 400n, initiatedAt: late }), earlierToday, config).fired).toBe(false);
    const over = dailyLimit.evaluate(transfer({ amountMinor: 401n, initiatedAt: late }), earlierToday, config);
    expect(over.fired).toBe(true);
    expect(over.reason).toBe("Transfers on 2026-11-25 (Asia/Kolkata) would total 1001, over the daily limit of 1000");
  });

  it("starts afresh at midnight in the zone, not at midnight UTC", () => {
    const yesterday = facts({ nearby: [past({ amountMinor: 900n, initiatedAt: at("2026-11-25T18:29:59.999Z") })] });
    const justAfterMidnight = at("2026-11-25T18:30:00.000Z");
    expect(dailyLimit.evaluate(transfer({ amountMinor: 900n, initiatedAt: justAfterMidnight }), yesterday, config).fired).toBe(false);
    // In UTC both are on 2026-11-25, so the same facts exceed a UTC limit.
    const utc = { ...config, dailyLimit: { ...config.dailyLimit, timeZone: "UTC" } };
    expect(dailyLimit.evaluate(transfer({ amountMinor: 900n, initiatedAt: justAfterMidnight }), yesterday, utc).fired).toBe(true);
  });

  it("does not count refused transfers or other users' transfers", () => {
    const nearby = [past({ amountMinor: 900n, passed: false }), past({ amountMinor: 900n, userId: "u2" })];
    expect(dailyLimit.evaluate(transfer({ amountMinor: 1_000n }), facts({ nearby }), config).fired).toBe(false);
  });
});

describe("score", () => {
  const fired = (weight: number): RuleResult => ({ rule: "velocity", fired: true, weight, reason: `fired ${weight}`, detail: {} });
  const quiet: RuleResult = { rule: "new-payee", fired: false, weight: 15, reason: null, detail: {} };

  it("sums fired weights; a score equal to the fail score fails, one below passes", () => {
    expect(score([fired(30), fired(29), quiet], 60)).toEqual({ riskScore: 59, passed: true, reasons: ["fired 30", "fired 29"] });
    expect(score([fired(30), fired(30), quiet], 60)).toEqual({ riskScore: 60, passed: false, reasons: ["fired 30", "fired 30"] });
    expect(score([quiet], 60)).toEqual({ riskScore: 0, passed: true, reasons: [] });
  });

  it("caps at 100 and leaves rules weighted 0 out", () => {
    expect(score([fired(100), fired(50)], 60).riskScore).toBe(100);
    expect(score([fired(0)], 1)).toEqual({ riskScore: 0, passed: true, reasons: [] });
  });
});
