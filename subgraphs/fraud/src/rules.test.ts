import { describe, expect, it } from "vitest";
import { parseConfig } from "@vaultpay/kit";
import { fraudConfigSchema } from "./config.ts";
import { BASE_ENV, rulesConfigFromEnv, transferFixture } from "./testing.ts";
import {
  calendarDay,
  calendarDayRange,
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
  velocityWindow,
  type Facts,
  type RuleResult,
  type RulesConfig,
} from "./rules.ts";

const env = BASE_ENV;

/** The defaults, as the service starts without any FRAUD_* variable. */
const defaults: RulesConfig = rulesConfigFromEnv();

const at = (iso: string) => new Date(iso);

const transfer = transferFixture;

const none = { count: 0, amountMinor: 0n };

function facts(overrides: Partial<Facts> = {}): Facts {
  return {
    velocity: { user: none, account: none },
    sameDayPassed: none,
    recentPassedAmountsMinor: [],
    paidPayeeBefore: true,
    knownDeviceIds: ["d1"],
    ...overrides,
  };
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
  const byUser = (count: number, amountMinor = 10_000n * BigInt(count)) =>
    facts({ velocity: { user: { count, amountMinor }, account: { count, amountMinor } } });

  it("fires past the maximum count, counting the transfer itself", () => {
    expect(velocity.evaluate(transfer(), byUser(2), config).fired).toBe(false); // 3 of max 3
    const fired = velocity.evaluate(transfer(), byUser(3), config);
    expect(fired.fired).toBe(true);
    expect(fired.reason).toContain("4 transfers by this user (max 3)");
  });

  it("reads the window as the instants less than its length away, either side (the store counts inside it)", () => {
    const { after, before } = velocityWindow(transfer().initiatedAt, 600);
    expect(after.toISOString()).toBe("2026-11-25T11:50:00.000Z");
    expect(before.toISOString()).toBe("2026-11-25T12:10:00.000Z");
  });

  it("fires when the money in the window passes the maximum", () => {
    const sent = byUser(1, 60_000n);
    expect(velocity.evaluate(transfer({ amountMinor: 40_000n }), sent, config).fired).toBe(false); // exactly 100 000
    const over = velocity.evaluate(transfer({ amountMinor: 40_001n }), sent, config);
    expect(over.fired).toBe(true);
    expect(over.reason).toContain("100001 sent by this user (max 100000)");
  });

  it("fires on the source account's attempts alone (another user's from the same account count there only)", () => {
    const shared = facts({ velocity: { user: none, account: { count: 3, amountMinor: 30_000n } } });
    const result = velocity.evaluate(transfer(), shared, config);
    expect(result.detail).toMatchObject({ userCount: 1, accountCount: 4 });
    expect(result.reason).toContain("by this account");
    expect(result.reason).not.toContain("by this user");
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

  it("spans a day from its first instant to the next day's, whatever its length in the zone", () => {
    expect(calendarDayRange(at("2026-11-25T18:29:00.000Z"), "Asia/Kolkata")).toEqual({
      day: "2026-11-25",
      from: at("2026-11-24T18:30:00.000Z"),
      to: at("2026-11-25T18:30:00.000Z"),
    });
    const hours = (range: { from: Date; to: Date }) => (range.to.getTime() - range.from.getTime()) / 3_600_000;
    // Spring forward and fall back in New York: 23 and 25 hours.
    expect(hours(calendarDayRange(at("2026-03-08T12:00:00.000Z"), "America/New_York"))).toBe(23);
    expect(hours(calendarDayRange(at("2026-11-01T12:00:00.000Z"), "America/New_York"))).toBe(25);
    // Santiago skips midnight when summer time starts (2026-09-06 begins at 01:00 local): the range
    // starts at the day's first instant, whatever the clock read.
    for (const [instant, zone] of [
      ["2026-09-06T15:00:00.000Z", "America/Santiago"],
      ["2026-03-08T12:00:00.000Z", "America/New_York"],
      ["2026-11-25T00:00:00.000Z", "UTC"],
    ] as const) {
      const { day, from, to } = calendarDayRange(at(instant), zone);
      expect(calendarDay(new Date(from.getTime() - 1), zone) < day).toBe(true);
      expect(calendarDay(from, zone)).toBe(day);
      expect(calendarDay(new Date(to.getTime() - 1), zone)).toBe(day);
      expect(calendarDay(to, zone) > day).toBe(true);
    }
  });

  it("adds the transfer to the user's passed sum of its day, strictly over the limit fires", () => {
    const late = at("2026-11-25T18:29:00.000Z"); // 23:59 in Kolkata
    const earlierToday = facts({ sameDayPassed: { count: 1, amountMinor: 600n } });
    expect(dailyLimit.evaluate(transfer({ amountMinor: 400n, initiatedAt: late }), earlierToday, config).fired).toBe(false);
    const over = dailyLimit.evaluate(transfer({ amountMinor: 401n, initiatedAt: late }), earlierToday, config);
    expect(over.fired).toBe(true);
    expect(over.reason).toBe("Transfers on 2026-11-25 (Asia/Kolkata) would total 1001, over the daily limit of 1000");
    // The day named is the zone's, not UTC's.
    const justAfterMidnight = dailyLimit.evaluate(
      transfer({ amountMinor: 1_001n, initiatedAt: at("2026-11-25T18:30:00.000Z") }),
      facts(),
      config,
    );
    expect(justAfterMidnight.detail).toMatchObject({ day: "2026-11-26", totalMinor: "1001" });
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
