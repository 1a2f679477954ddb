import { describe, expect, it } from "vitest";
import { POOLED_MAX, pooledRandomBytes } from "./random.ts";

describe("pooledRandomBytes", () => {
  it("hands out each cut once, across pool refills", () => {
    // 1,000 cuts of 16 bytes span four refills of the 4 KiB pool.
    const seen = new Set(Array.from({ length: 1_000 }, () => pooledRandomBytes(16).toString("hex")));
    expect(seen.size).toBe(1_000);
  });

  it("returns a copy the caller owns: a later refill of the pool does not change it", () => {
    const held = pooledRandomBytes(32);
    const before = held.toString("hex");
    // More than the whole pool: it is refilled at least once while `held` is kept.
    for (let cut = 0; cut < 300; cut++) pooledRandomBytes(POOLED_MAX);
    expect(held.toString("hex")).toBe(before);
  });

  it("gives the size asked, from the pool or, above POOLED_MAX, straight from the CSPRNG", () => {
    expect(pooledRandomBytes(0)).toHaveLength(0);
    expect(pooledRandomBytes(POOLED_MAX)).toHaveLength(POOLED_MAX);
    const large = pooledRandomBytes(POOLED_MAX + 1);
    expect(large).toHaveLength(POOLED_MAX + 1);
    expect(large.equals(Buffer.alloc(POOLED_MAX + 1))).toBe(false);
  });

  it("refuses a size that is not a whole number of bytes", () => {
    expect(() => pooledRandomBytes(-1)).toThrow(RangeError);
    expect(() => pooledRandomBytes(1.5)).toThrow(RangeError);
  });
});
