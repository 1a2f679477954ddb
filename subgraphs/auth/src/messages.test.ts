import { describe, expect, it } from "vitest";
import { formatAmount, otpMessage, transferNoticeMessage } from "./messages.ts";

describe("customer messages", () => {
  it("writes amounts from minor units without floats", () => {
    expect(formatAmount(2500050n, "INR")).toBe("25000.50 INR");
    expect(formatAmount(5n, "INR")).toBe("0.05 INR");
    expect(formatAmount(90071992547409931n, "INR")).toBe("900719925474099.31 INR");
  });

  it("says what happened to a transfer, with its reference, and never carries a code", () => {
    const failed = transferNoticeMessage({
      transferId: "t-9",
      status: "FAILED",
      amountMinor: 60000n,
      currency: "INR",
      reason: "Fraud check failed",
    });
    expect(failed.subject).toBe("Transfer of 600.00 INR failed");
    expect(failed.text).toContain("Reason: Fraud check failed.");
    expect(failed.text).toContain("Reference: t-9.");
    expect(otpMessage("123456", 300).text).toContain("123456");
    expect(failed.text).not.toMatch(/[0-9]{6}/);
  });
});
