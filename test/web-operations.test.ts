/**
 * The web app's hand-typed operations against the public contract (test/fixtures/api-contract.graphql,
 * the copy of API.md, and test/fixtures/api-additions.graphql): each document parses, validates and names itself as its export says. The
 * app therefore uses only the contract, and a contract change that breaks it fails here.
 * (GraphQL Code Generator was not used: the app's 19 small documents are typed by hand beside
 * their text, and this test is what keeps the two honest.)
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { Kind, buildASTSchema, parse, validate, type DocumentNode } from "graphql";
import { describe, expect, it } from "vitest";
import { PUBLIC_ERROR_CODES } from "@vaultpay/kit";
import { REPO_ROOT } from "@vaultpay/stack";
import { ERROR_CODES } from "../apps/web/src/errors.ts";
import { ALL_OPERATIONS } from "../apps/web/src/operations.ts";

// The contract and the additions since (README's "API: additions to the contract").
const contract = buildASTSchema(withAdditions(fixture("api-contract.graphql"), fixture("api-additions.graphql")));

function fixture(file: string): DocumentNode {
  return parse(readFileSync(path.join(REPO_ROOT, "test/fixtures", file), "utf8"));
}

/**
 * The contract with the additions applied. A field the additions write again (myTransfers, which
 * gained an argument) replaces the contract's: SDL has no way to add an argument by extension, and
 * test/contract.test.ts checks the contract's arguments are still there in the graph.
 */
function withAdditions(base: DocumentNode, additions: DocumentNode): DocumentNode {
  const rewritten = new Set<string>();
  for (const definition of additions.definitions)
    if (definition.kind === Kind.OBJECT_TYPE_EXTENSION)
      for (const field of definition.fields ?? []) rewritten.add(`${definition.name.value}.${field.name.value}`);
  const definitions = base.definitions.map((definition) =>
    definition.kind === Kind.OBJECT_TYPE_DEFINITION
      ? { ...definition, fields: definition.fields?.filter((field) => !rewritten.has(`${definition.name.value}.${field.name.value}`)) }
      : definition,
  );
  return { ...base, definitions: [...definitions, ...additions.definitions] };
}

describe("web app operations", () => {
  it.each(ALL_OPERATIONS.map((operation) => [operation.name, operation] as const))(
    "%s is valid against the public contract",
    (name, operation) => {
      const document = parse(operation.document);
      expect(validate(contract, document)).toEqual([]);
      const definitions = document.definitions.filter((definition) => definition.kind === Kind.OPERATION_DEFINITION);
      expect(definitions).toHaveLength(1);
      expect(definitions[0]!.name?.value).toBe(name);
    },
  );

  it("every document stays well under the gateway's token cap (MAX_DOCUMENT_TOKENS, 1,000)", () => {
    // parse() throws past maxTokens.
    for (const operation of ALL_OPERATIONS) expect(() => parse(operation.document, { maxTokens: 400 })).not.toThrow();
  });

  it("has a sentence for every public error code of the API (BAD_USER_INPUT shows the server's own)", () => {
    const missing = [...PUBLIC_ERROR_CODES, "INTERNAL"].filter((code) => code !== "BAD_USER_INPUT" && !ERROR_CODES.includes(code));
    expect(missing).toEqual([]);
  });
});
