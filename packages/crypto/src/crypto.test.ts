import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  CryptoError,
  blindIndex,
  decrypt,
  encrypt,
  generateKeyRingEnv,
  keyRingFrom,
  mask,
  needsReencryption,
  secretsEqual,
} from "./index.ts";

describe("field encryption", () => {
  const ring = keyRingFrom(generateKeyRingEnv("k1"));

  it("round-trips, with a fresh IV per value and no plaintext in the token", () => {
    const a = encrypt(ring, "123456789012", "account.number");
    const b = encrypt(ring, "123456789012", "account.number");
    expect(a).not.toBe(b);
    expect(a).not.toContain("123456789012");
    expect(a.startsWith("v1.k1.")).toBe(true);
    expect(decrypt(ring, a, "account.number")).toBe("123456789012");
  });

  it("refuses a value moved to another field or tampered with", () => {
    const token = encrypt(ring, "+919800000001", "user.phone");
    expect(() => decrypt(ring, token, "account.number")).toThrow(CryptoError);
    const parts = token.split(".");
    const sealed = Buffer.from(parts[3]!, "base64url");
    sealed[0]! ^= 1;
    parts[3] = sealed.toString("base64url");
    expect(() => decrypt(ring, parts.join("."), "user.phone")).toThrow(/authentication/);
  });

  it("rotates keys: old values still open and are flagged for re-encryption", () => {
    const old = encrypt(ring, "secret", "f");
    const oldKeys = generateKeyRingEnv("k1");
    const rotated = keyRingFrom({
      ENCRYPTION_KEYS: `${[...ring.keys].map(([id, key]) => `${id}:${key.toString("base64")}`).join(",")},k2:${Buffer.alloc(32, 7).toString("base64")}`,
      ENCRYPTION_ACTIVE_KEY_ID: "k2",
      BLIND_INDEX_KEY: ring.blindIndexKey.toString("base64"),
    });
    expect(decrypt(rotated, old, "f")).toBe("secret");
    expect(needsReencryption(rotated, old)).toBe(true);
    const fresh = encrypt(rotated, "secret", "f");
    expect(needsReencryption(rotated, fresh)).toBe(false);
    expect(() => decrypt(keyRingFrom(oldKeys), fresh, "f")).toThrow(/unknown key id k2/);
  });

  it("rejects bad key configuration with a clear message", () => {
    expect(() => keyRingFrom({ ENCRYPTION_KEYS: "k1:c2hvcnQ=", ENCRYPTION_ACTIVE_KEY_ID: "k1", BLIND_INDEX_KEY: "x" })).toThrow(/32 bytes/);
    const env = generateKeyRingEnv("k1");
    expect(() => keyRingFrom({ ...env, ENCRYPTION_ACTIVE_KEY_ID: "k9" })).toThrow(/not in ENCRYPTION_KEYS/);
  });
});

describe("blind index, masking, comparison", () => {
  const ring = keyRingFrom(generateKeyRingEnv());
  it("is deterministic per field and keyed", () => {
    expect(blindIndex(ring, "123", "account.number")).toBe(blindIndex(ring, "123", "account.number"));
    expect(blindIndex(ring, "123", "account.number")).not.toBe(blindIndex(ring, "123", "user.phone"));
    expect(blindIndex(keyRingFrom(generateKeyRingEnv()), "123", "account.number")).not.toBe(blindIndex(ring, "123", "account.number"));
  });

  it("keeps every stored index valid: HMAC-SHA256 of context NUL value under each ring's own key (keys are cached per ring)", () => {
    const other = keyRingFrom(generateKeyRingEnv());
    for (const keyRing of [ring, other, ring]) {
      const expected = createHmac("sha256", keyRing.blindIndexKey).update("account.number\u0000123456789012", "utf8").digest("base64url");
      expect(blindIndex(keyRing, "123456789012", "account.number")).toBe(expected);
    }
    // A value sealed under one ring opens only under a ring holding its key.
    const token = encrypt(other, "secret", "user.phone");
    expect(decrypt(other, token, "user.phone")).toBe("secret");
    expect(() => decrypt(keyRingFrom(generateKeyRingEnv(other.activeKeyId)), token, "user.phone")).toThrow(CryptoError);
  });
  it("masks all but the last four", () => {
    expect(mask("123456789012")).toBe("••••••••9012");
    expect(mask("12")).toBe("12");
  });
  it("compares secrets", () => {
    expect(secretsEqual("abc", "abc")).toBe(true);
    expect(secretsEqual("abc", "abd")).toBe(false);
    expect(secretsEqual("abc", "abcd")).toBe(false);
  });
});
