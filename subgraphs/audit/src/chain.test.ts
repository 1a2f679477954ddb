/** The hash chain alone: canonical JSON, linking, and where verification says it broke. */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ChainVerifier, GENESIS_HASH, canonicalJson, chainHash, contentHash, link, type AuditEntry, type ChainedRecord } from "./chain.ts";

function entry(n: number): AuditEntry {
  return {
    eventId: `0190a000-0000-7000-8000-${String(n).padStart(12, "0")}`,
    type: "account.debited",
    occurredAt: new Date(Date.UTC(2026, 10, 25, 9, 30, 0, n)).toISOString(),
    correlationId: "corr-1",
    causationId: null,
    actorUserId: "user-1",
    data: canonicalJson({ transferId: `t-${n}`, accountId: "a-1", amountMinor: "100" }),
  };
}

function verify(
  records: ChainedRecord[],
  head = { seq: records.at(-1)?.seq ?? 0, hash: records.at(-1)?.hash ?? GENESIS_HASH },
  batchSize = 2,
) {
  const verifier = new ChainVerifier();
  for (let i = 0; i < records.length; i += batchSize) if (!verifier.feed(records.slice(i, i + batchSize))) break;
  return verifier.finish(head);
}

describe("canonicalJson", () => {
  it("sorts keys at every level and drops undefined, so equal values give equal text", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: null, y: "é" }], c: undefined } })).toBe('{"a":{"d":[1,{"y":"é","z":null}]},"b":1}');
    expect(canonicalJson({ x: 1, y: 2 })).toBe(canonicalJson({ y: 2, x: 1 }));
  });
});

describe("the hashed record", () => {
  /** The chain's definition, the long way: data parsed back and the whole record made canonical. */
  const reference = (entry: AuditEntry, seq?: number) =>
    createHash("sha256")
      .update(
        (seq === undefined ? "" : GENESIS_HASH) +
          canonicalJson({ ...(seq === undefined ? {} : { seq }), ...entry, data: JSON.parse(entry.data) as unknown }),
        "utf8",
      )
      .digest("hex");

  it("is canonicalJson of the record with its data nested, for any data", () => {
    const values: unknown[] = [
      null,
      0,
      -1.5e-7,
      123456789012345680000,
      "",
      'quote " backslash \\ newline \n tab \t nul \u0000',
      "é 💶 \ud800 lone surrogate",
      [],
      [null, [1, [2, {}]], "x"],
      { z: 1, a: { y: [3, { c: null, b: "é" }], x: "\u2028" }, "10": "numeric key", "2": "first", __proto__x: 1 },
      JSON.parse('{"__proto__": {"polluted": true}, "k": "v"}'),
      { 'key with "quotes"': true, "": "empty key", é: "accent", Z: 1, a: 2 },
    ];
    for (const [index, value] of values.entries()) {
      const one = {
        ...entry(index),
        data: canonicalJson(value),
        causationId: index % 2 === 0 ? null : "cause-1",
        actorUserId: index % 3 === 0 ? null : "user-2",
      };
      expect(chainHash(GENESIS_HASH, index + 1, one)).toBe(reference(one, index + 1));
      expect(contentHash(one)).toBe(reference(one));
    }
  });

  it("hashes data as stored, so a byte changed without changing its value still shows", () => {
    const stored = entry(1);
    const respaced = { ...stored, data: stored.data.replaceAll(",", ", ") };
    expect(JSON.parse(respaced.data)).toEqual(JSON.parse(stored.data));
    expect(chainHash(GENESIS_HASH, 1, respaced)).not.toBe(chainHash(GENESIS_HASH, 1, stored));
  });
});

describe("chain", () => {
  const records = link({ seq: 0, hash: GENESIS_HASH }, [1, 2, 3, 4, 5].map(entry));

  it("links each record to the previous hash, seq from 1 without gaps", () => {
    expect(records.map((record) => record.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(records[0]!.hash).toBe(chainHash(GENESIS_HASH, 1, entry(1)));
    expect(records[1]!.hash).toBe(chainHash(records[0]!.hash, 2, entry(2)));
    expect(verify(records)).toEqual({ valid: true, checked: 5, firstBrokenSeq: null });
    expect(verify([], { seq: 0, hash: GENESIS_HASH })).toEqual({ valid: true, checked: 0, firstBrokenSeq: null });
  });

  it("keeps the content hash free of the record's place in the chain", () => {
    const elsewhere = link({ seq: 41, hash: "f".repeat(64) }, [entry(3)])[0]!;
    expect(elsewhere.hash).not.toBe(records[2]!.hash);
    expect(contentHash(elsewhere)).toBe(contentHash(records[2]!));
  });

  it("names the first altered, removed, reordered or truncated record", () => {
    const altered = records.map((record) => (record.seq === 3 ? { ...record, data: '{"amountMinor":"999"}' } : record));
    expect(verify(altered)).toEqual({ valid: false, checked: 3, firstBrokenSeq: 3 });
    const actor = records.map((record) => (record.seq === 4 ? { ...record, actorUserId: "someone-else" } : record));
    expect(verify(actor).firstBrokenSeq).toBe(4);
    const removed = records.filter((record) => record.seq !== 2);
    expect(verify(removed)).toEqual({ valid: false, checked: 2, firstBrokenSeq: 2 });
    const swapped = [records[0]!, records[2]!, records[1]!, records[3]!, records[4]!];
    expect(verify(swapped).firstBrokenSeq).toBe(2);
    // The tail removed: every remaining hash is fine, the head says two more existed.
    expect(verify(records.slice(0, 3), { seq: 5, hash: records[4]!.hash })).toEqual({ valid: false, checked: 3, firstBrokenSeq: 4 });
    // Rehashing the tail after an edit still disagrees with the head.
    const forged = link({ seq: 2, hash: records[1]!.hash }, [{ ...entry(3), data: "{}" }, entry(4), entry(5)]);
    expect(verify([...records.slice(0, 2), ...forged], { seq: 5, hash: records[4]!.hash }).firstBrokenSeq).toBe(5);
  });
});
