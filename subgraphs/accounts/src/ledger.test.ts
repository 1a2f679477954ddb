import { describe, expect, it } from "vitest";
import { MAX_MOVEMENT_MINOR, checkAmount, credit, debit, deposit, refund, type TransferHistory } from "./ledger.ts";

const active = { userId: "u1", status: "ACTIVE" as const, currency: "INR", balanceMinor: 1_000n };
const request = { amountMinor: 100n, currency: "INR", userId: "u1" };
const debited: TransferHistory = { debit: { amountMinor: 100n, currency: "INR" }, credited: false, refunded: false };

describe("debit", () => {
  it("takes money from an active account of the initiator that holds enough", () => {
    expect(debit(active, request)).toEqual({ ok: true, balanceAfterMinor: 900n });
    expect(debit(active, { ...request, amountMinor: 1_000n })).toEqual({ ok: true, balanceAfterMinor: 0n });
  });

  it("refuses with a reason", () => {
    expect(debit(active, { ...request, amountMinor: 1_001n })).toEqual({ ok: false, reason: "INSUFFICIENT_FUNDS" });
    expect(debit({ ...active, status: "FROZEN" }, request)).toEqual({ ok: false, reason: "ACCOUNT_NOT_ACTIVE" });
    expect(debit({ ...active, status: "CLOSED" }, request)).toEqual({ ok: false, reason: "ACCOUNT_NOT_ACTIVE" });
    expect(debit(undefined, request)).toEqual({ ok: false, reason: "ACCOUNT_NOT_FOUND" });
    expect(debit(active, { ...request, userId: "someone-else" })).toEqual({ ok: false, reason: "ACCOUNT_NOT_FOUND" });
    expect(debit(active, { ...request, currency: "USD" })).toEqual({ ok: false, reason: "CURRENCY_MISMATCH" });
  });

  it("treats a non-positive amount as a bug, not a decision", () => {
    expect(() => debit(active, { ...request, amountMinor: 0n })).toThrow(RangeError);
    expect(() => debit(active, { ...request, amountMinor: -5n })).toThrow(RangeError);
  });
});

describe("credit", () => {
  it("moves only what this transfer debited and did not refund, into an active account", () => {
    expect(credit(active, 100n, debited)).toEqual({ ok: true, balanceAfterMinor: 1_100n });
    expect(credit(active, 100n, { credited: false, refunded: false })).toEqual({ ok: false, reason: "DEBIT_NOT_FOUND" });
    expect(credit(active, 99n, debited)).toEqual({ ok: false, reason: "AMOUNT_MISMATCH" });
    expect(credit(active, 100n, { ...debited, refunded: true })).toEqual({ ok: false, reason: "ALREADY_REFUNDED" });
    expect(credit(undefined, 100n, debited)).toEqual({ ok: false, reason: "ACCOUNT_NOT_FOUND" });
    expect(credit({ ...active, status: "FROZEN" }, 100n, debited)).toEqual({ ok: false, reason: "ACCOUNT_NOT_ACTIVE" });
    expect(credit({ ...active, currency: "USD" }, 100n, debited)).toEqual({ ok: false, reason: "CURRENCY_MISMATCH" });
  });
});

describe("refund", () => {
  it("gives back a debit that happened, once, even to a frozen account, never after a credit", () => {
    expect(refund(active, 100n, debited)).toEqual({ ok: true, balanceAfterMinor: 1_100n });
    expect(refund({ ...active, status: "FROZEN" }, 100n, debited)).toEqual({ ok: true, balanceAfterMinor: 1_100n });
    expect(refund(active, 100n, { credited: false, refunded: false })).toEqual({ ok: false, reason: "DEBIT_NOT_FOUND" });
    expect(refund(active, 50n, debited)).toEqual({ ok: false, reason: "AMOUNT_MISMATCH" });
    expect(refund(active, 100n, { ...debited, credited: true })).toEqual({ ok: false, reason: "ALREADY_CREDITED" });
  });
});

describe("deposit and amounts", () => {
  it("deposits into active accounts only", () => {
    expect(deposit(active, 5n)).toEqual({ ok: true, balanceAfterMinor: 1_005n });
    expect(deposit({ ...active, status: "CLOSED" }, 5n)).toEqual({ ok: false, reason: "ACCOUNT_NOT_ACTIVE" });
  });

  it("bounds every amount", () => {
    expect(checkAmount(1n)).toEqual({ ok: true });
    expect(checkAmount(MAX_MOVEMENT_MINOR)).toEqual({ ok: true });
    expect(checkAmount(0n)).toMatchObject({ ok: false });
    expect(checkAmount(-1n)).toMatchObject({ ok: false });
    expect(checkAmount(MAX_MOVEMENT_MINOR + 1n)).toMatchObject({ ok: false });
  });
});
