import { describe, expect, it } from "vitest";
import { eventId } from "@vaultpay/events";
import { uuidV7Floor } from "./store.ts";

describe("uuidV7Floor", () => {
  it("sorts below every event id made at or after its time and above every one made before", () => {
    const before = Date.now();
    const id = eventId();
    const after = Date.now();
    expect(uuidV7Floor(before) <= id).toBe(true);
    expect(id < uuidV7Floor(after + 1)).toBe(true);
    expect(uuidV7Floor(before - 1) < uuidV7Floor(before)).toBe(true);
  });

  it("is a uuid with the time in its first 48 bits, clamped to what they hold", () => {
    expect(uuidV7Floor(Date.UTC(2026, 11, 6))).toBe("01a248a6-7c00-0000-0000-000000000000");
    expect(uuidV7Floor(-5)).toBe("00000000-0000-0000-0000-000000000000");
    expect(uuidV7Floor(2 ** 60)).toBe("ffffffff-ffff-0000-0000-000000000000");
  });
});
