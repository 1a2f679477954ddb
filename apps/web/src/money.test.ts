import { describe, expect, it } from "vitest";
import { formatPaise, rupeesToPaise } from "./money.ts";

describe("rupeesToPaise", () => {
  it.each([
    ["250", "25000"],
    ["250.5", "25050"],
    ["250.05", "25005"],
    ["0.01", "1"],
    ["1,23,456.78", "12345678"],
    ["1,234.50", "123450"],
    ["₹ 10", "1000"],
    ["  7. ", "700"],
    // A float would turn this into 1.0000000000000002e+21-ish noise; strings keep every digit.
    ["999999999.99", "99999999999"],
  ])("%s rupees is %s paise", (input, paise) => {
    expect(rupeesToPaise(input)).toEqual({ ok: true, paise });
  });

  it.each(["", "abc", "-5", "1e3", "1.234", "0", "0.00", "12,34,5", "1000000001", "Infinity", "0x10"])(
    "refuses %j with a sentence",
    (input) => {
      const result = rupeesToPaise(input);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.reason).toMatch(/\.$/);
    },
  );

  it("0.1 + 0.2 entered as text is exact", () => {
    const a = rupeesToPaise("0.1");
    const b = rupeesToPaise("0.2");
    expect(a.ok && b.ok && BigInt(a.paise) + BigInt(b.paise)).toBe(30n);
  });
});

describe("formatPaise", () => {
  it.each([
    ["0", "₹0.00"],
    ["5", "₹0.05"],
    ["25000", "₹250.00"],
    ["12345678", "₹1,23,456.78"],
    ["10000000000", "₹10,00,00,000.00"],
    ["90071992547409930", "₹90,07,19,92,54,74,099.30"],
    ["-150", "-₹1.50"],
  ])("%s paise is %s", (minor, text) => {
    expect(formatPaise(minor)).toBe(text);
  });
});
