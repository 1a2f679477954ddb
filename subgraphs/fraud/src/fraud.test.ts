import { describe, expect, it } from "vitest";
import type { Caller } from "@vaultpay/kit";
import { assertAdmin, checkTransfer, checksPageSize, maySeeCheck, reasonsFor } from "./fraud.ts";
import type { Facts, RulesConfig } from "./rules.ts";
import { rulesConfigFromEnv, transferFixture } from "./testing.ts";

const config: RulesConfig = rulesConfigFromEnv();

const now = new Date("2026-11-25T12:00:00.000Z");
const transfer = transferFixture();
const none = { count: 0, amountMinor: 0n };
const facts: Facts = {
  velocity: { user: none, account: none },
  sameDayPassed: none,
  recentPassedAmountsMinor: [],
  paidPayeeBefore: true,
  knownDeviceIds: ["d1"],
};
const admin: Caller = { userId: "admin", role: "ADMIN", sessionId: "s", deviceId: "d", tokenId: "j" };

describe("checking a transfer", () => {
  it("passes a transfer no rule fires on and records every rule's result", () => {
    const { verdict, evaluation } = checkTransfer(transfer, facts, config, now);
    expect(verdict).toEqual({ riskScore: 0, passed: true, reasons: [], customerReasons: [] });
    expect(evaluation.rules.map((r) => r.rule)).toEqual([
      "high-amount",
      "unusual-amount",
      "velocity",
      "unknown-device",
      "device-mismatch",
      "unproven-device",
      "new-payee",
      "daily-limit",
    ]);
    expect(evaluation).toMatchObject({ failScore: 60, failedClosed: null, facts: { knownDevices: 1, paidPayeeBefore: true } });
  });

  it("fails a stolen session: another device than the session's, unknown to the user", () => {
    const { verdict } = checkTransfer({ ...transfer, requestDeviceId: "d9" }, facts, config, now);
    expect(verdict).toEqual({
      riskScore: 70,
      passed: false,
      reasons: [
        "The transfer came from a device not registered for this user",
        "The transfer request came from a different device than the signed-in session",
      ],
      customerReasons: [
        "The transfer came from a device not registered for this customer",
        "The transfer came from another device than the signed-in session",
      ],
    });
  });

  it("tells the customer every rule that fired in plain words, without thresholds or history figures", () => {
    const everything = {
      ...transfer,
      requestDeviceId: "d9",
      amountMinor: 30_000_000n,
    };
    // Eight earlier transfers of 10 000 rupees, all passed, seconds ago today.
    const eight = { count: 8, amountMinor: 8_000_000n };
    const history: Facts = {
      velocity: { user: eight, account: eight },
      sameDayPassed: eight,
      recentPassedAmountsMinor: Array.from({ length: 8 }, () => 1_000_000n),
      paidPayeeBefore: false,
      knownDeviceIds: [],
    };
    const { verdict } = checkTransfer(everything, history, config, now);
    expect(verdict.reasons).toHaveLength(7);
    expect(verdict.reasons.join(" ")).toMatch(/\d{4,}/);
    expect(verdict.customerReasons).toHaveLength(7);
    for (const line of verdict.customerReasons) expect(line).not.toMatch(/\d/);
    expect(reasonsFor(admin, verdict)).toBe(verdict.reasons);
    expect(reasonsFor({ ...admin, role: "CUSTOMER" }, verdict)).toBe(verdict.customerReasons);
  });

  it.each([
    ["the source and destination accounts are the same", { toAccountId: "a1" }],
    ["amount limits are not configured for currency USD", { currency: "USD" }],
    ["the initiation time is in the future", { initiatedAt: new Date(now.getTime() + 5 * 60_000 + 1) }],
    ["the amount is not positive", { amountMinor: 0n }],
  ] as const)("fails closed when %s", (why, overrides) => {
    const { verdict, evaluation } = checkTransfer({ ...transfer, ...overrides }, facts, config, now);
    expect(verdict).toEqual({
      riskScore: 100,
      passed: false,
      reasons: [`Fraud check could not be computed: ${why}`],
      customerReasons: ["The fraud check could not be completed"],
    });
    expect(evaluation).toMatchObject({ failedClosed: why, rules: [] });
  });

  it("accepts a request from up to five minutes ahead (clock skew)", () => {
    expect(checkTransfer({ ...transfer, initiatedAt: new Date(now.getTime() + 5 * 60_000) }, facts, config, now).verdict.passed).toBe(true);
  });

  it("fails closed even when the fail score is configured at its maximum", () => {
    expect(checkTransfer({ ...transfer, currency: "USD" }, facts, { ...config, failScore: 100 }, now).verdict.passed).toBe(false);
  });
});

describe("who sees checks", () => {
  const customer: Caller = { userId: "u1", role: "CUSTOMER", sessionId: "s", deviceId: "d", tokenId: "j" };
  const admin: Caller = { ...customer, userId: "admin", role: "ADMIN" };

  it("lists checks for an ADMIN only", () => {
    expect(() => assertAdmin(undefined)).toThrow(expect.objectContaining({ code: "UNAUTHENTICATED" }));
    expect(() => assertAdmin(customer)).toThrow(expect.objectContaining({ code: "FORBIDDEN" }));
    expect(() => assertAdmin(admin)).not.toThrow();
  });

  it("bounds the page size", () => {
    expect(checksPageSize(1)).toBe(1);
    expect(checksPageSize(200)).toBe(200);
    for (const bad of [0, -1, 201, 1.5]) expect(() => checksPageSize(bad)).toThrow(expect.objectContaining({ code: "BAD_USER_INPUT" }));
  });

  it("shows a transfer's check to its owner and to an ADMIN", () => {
    expect(maySeeCheck(customer, { userId: "u1" })).toBe(true);
    expect(maySeeCheck(customer, { userId: "u2" })).toBe(false);
    expect(maySeeCheck(admin, { userId: "u2" })).toBe(true);
    expect(maySeeCheck(undefined, { userId: "u1" })).toBe(false);
  });
});
