import { buildSchema } from "graphql";
import { describe, expect, it } from "vitest";
import { DocumentCache } from "./documents.ts";

const schema = buildSchema(`type Query { a: String } type Subscription { changed(id: ID!): String }`);

describe("DocumentCache", () => {
  it("parses and validates a text once: the same document comes back", () => {
    const cache = new DocumentCache();
    const query = `subscription S($id: ID!) { changed(id: $id) }`;
    const first = cache.get(schema, query, 100);
    expect(first.errors).toBeUndefined();
    expect(cache.get(schema, query, 100).document).toBe(first.document);
  });

  it("answers validation errors every time, as fresh errors with their code", () => {
    const cache = new DocumentCache();
    const query = `subscription { missing }`;
    const first = cache.get(schema, query, 100).errors!;
    const second = cache.get(schema, query, 100).errors!;
    expect(first.map((error) => error.extensions.code)).toEqual(["GRAPHQL_VALIDATION_FAILED"]);
    expect(second.map((error) => error.message)).toEqual(first.map((error) => error.message));
    expect(second[0]).not.toBe(first[0]);
  });

  it("refuses what does not parse, or has too many tokens, without keeping it", () => {
    const cache = new DocumentCache();
    expect(cache.get(schema, `subscription {`, 100).errors?.[0]?.extensions.code).toBe("GRAPHQL_PARSE_FAILED");
    const long = `subscription S($id: ID!) { changed(id: $id) }`;
    expect(cache.get(schema, long, 3).errors?.[0]?.extensions.code).toBe("GRAPHQL_PARSE_FAILED");
    expect(cache.get(schema, long, 100).document).toBeDefined();
  });

  it("validates again against a new schema", () => {
    const cache = new DocumentCache();
    const query = `subscription { changed(id: "1") }`;
    expect(cache.get(schema, query, 100).document).toBeDefined();
    const without = buildSchema(`type Query { a: String } type Subscription { other: String }`);
    expect(cache.get(without, query, 100).errors?.[0]?.extensions.code).toBe("GRAPHQL_VALIDATION_FAILED");
  });

  it("keeps texts up to its size, dropping the least recently used", () => {
    const cache = new DocumentCache(120);
    const text = (n: number) => `subscription Q${n} { changed(id: "${n}") }${" ".repeat(10)}`;
    const first = cache.get(schema, text(1), 100).document;
    for (let n = 2; n <= 5; n++) cache.get(schema, text(n), 100);
    // ~50 characters each, 120 at most: the first was dropped and is parsed anew.
    expect(cache.get(schema, text(1), 100).document).not.toBe(first);
    expect(cache.get(schema, text(5), 100).document).toBe(cache.get(schema, text(5), 100).document);
  });
});
