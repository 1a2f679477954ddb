import { describe, expect, it } from "vitest";
import {
  canListAccountsOf,
  canSee,
  checkCurrency,
  generateAccountNumber,
  isValidAccountNumber,
  luhnCheckDigit,
  maskAccountNumber,
} from "./accounts.ts";

describe("account numbers", () => {
  it("computes the Luhn check digit of known numbers", () => {
    // 7992739871 → 3 is the textbook example; 4539 1488 0343 6467 a valid card number.
    expect(luhnCheckDigit("7992739871")).toBe(3);
    expect(luhnCheckDigit("453914880343646")).toBe(7);
    expect(luhnCheckDigit("00000000000")).toBe(0);
  });

  it("generates 12 digits that check, never starting with 0", () => {
    for (let i = 0; i < 500; i++) {
      const number = generateAccountNumber();
      expect(number).toMatch(/^[1-9][0-9]{11}$/);
      expect(isValidAccountNumber(number)).toBe(true);
    }
  });

  it("catches every single-digit typo, and adjacent swaps (except Luhn's blind spot 09 ↔ 90)", () => {
    for (let sample = 0; sample < 50; sample++) {
      const number = generateAccountNumber();
      for (let position = 0; position < 12; position++) {
        for (let digit = 0; digit <= 9; digit++) {
          const typo = `${number.slice(0, position)}${digit}${number.slice(position + 1)}`;
          if (typo !== number) expect(isValidAccountNumber(typo)).toBe(false);
        }
      }
      for (let position = 0; position < 11; position++) {
        const [a, b] = [number[position]!, number[position + 1]!];
        if (a === b || `${a}${b}` === "09" || `${a}${b}` === "90") continue;
        const swapped = `${number.slice(0, position)}${b}${a}${number.slice(position + 2)}`;
        expect(isValidAccountNumber(swapped)).toBe(false);
      }
    }
  });

  it("refuses anything but 12 digits", () => {
    for (const value of ["", "12345678901", "1234567890123", "12345678901a", " 123456789012", "１２３４５６７８９０１２"])
      expect(isValidAccountNumber(value)).toBe(false);
  });

  it("masks all but the last four", () => {
    expect(maskAccountNumber("4821")).toBe("XXXX4821");
  });
});

describe("currencies", () => {
  it("accepts INR only, as an ISO 4217 code", () => {
    expect(checkCurrency("INR")).toEqual({ ok: true, currency: "INR" });
    expect(checkCurrency("USD")).toMatchObject({ ok: false, message: expect.stringMatching(/not supported/) });
    for (const bad of ["inr", "IN", "INRR", "", "₹"])
      expect(checkCurrency(bad)).toMatchObject({ ok: false, message: expect.stringMatching(/ISO 4217/) });
  });
});

describe("visibility", () => {
  const account = { userId: "u1" };
  it("lets owners and ADMINs see an account, nobody else", () => {
    expect(canSee({ userId: "u1", role: "CUSTOMER" }, account)).toBe(true);
    expect(canSee({ userId: "u2", role: "CUSTOMER" }, account)).toBe(false);
    expect(canSee({ userId: "admin", role: "ADMIN" }, account)).toBe(true);
    expect(canListAccountsOf({ userId: "u2", role: "CUSTOMER" }, "u1")).toBe(false);
    expect(canListAccountsOf({ userId: "admin", role: "ADMIN" }, "u1")).toBe(true);
  });
});
