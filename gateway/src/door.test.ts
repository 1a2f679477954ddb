import { buildSchema, parse } from "graphql";
import { describe, expect, it } from "vitest";
import { DomainError } from "@vaultpay/kit";
import { MAX_VARIABLES_DEPTH, checkBeforeParsing, checkedVariables, resolveOperation } from "./door.ts";
import { selectedFields } from "./shield.ts";

const schema = buildSchema(`
  scalar MinorUnits
  scalar DateTime
  enum AccountType { SAVINGS CURRENT }
  type Query { account(id: ID!): String  since(at: DateTime): String  tags(ids: [ID!]): String }
  type Mutation {
    login(email: String!, password: String!): String
    pay(amountMinor: MinorUnits!, note: String): String
    open(type: AccountType!): String
  }
`);
const limits = { maxDocumentChars: 100, maxDocumentTokens: 50 };

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).code).toBe("BAD_USER_INPUT");
    return (error as DomainError).message;
  }
  throw new Error("expected a refusal");
}

function check(query: string, variables?: Record<string, unknown>, operationName?: string) {
  const document = parse(query);
  const operation = resolveOperation(document, operationName);
  return { document, operation, variables: checkedVariables(schema, document, operation, variables) };
}

describe("before parsing", () => {
  it("refuses a document over the size cap", () => {
    expect(refusal(() => checkBeforeParsing({ query: `{ account(id: "1") }${" ".repeat(100)}`, variables: {} }, limits))).toMatch(
      /Document is too large: 120 characters \(at most 100\)/,
    );
    expect(() => checkBeforeParsing({ query: `{ account(id: "1") }`, variables: {} }, limits)).not.toThrow();
  });

  it("refuses deep or huge variables without recursing", () => {
    let deep: unknown = "x";
    for (let level = 0; level < 100_000; level++) deep = [deep];
    expect(refusal(() => checkBeforeParsing({ query: "{}", variables: { id: deep } }, limits))).toMatch(/nested too deep/);
    let justDeepEnough: unknown = "x";
    for (let level = 0; level < MAX_VARIABLES_DEPTH - 1; level++) justDeepEnough = [justDeepEnough];
    expect(() => checkBeforeParsing({ query: "{}", variables: { id: justDeepEnough } }, limits)).not.toThrow();
    expect(
      refusal(() => checkBeforeParsing({ query: "{}", variables: { ids: Array.from({ length: 20_000 }, () => "1") } }, limits)),
    ).toMatch(/too many values/);
  });

  it("refuses NUL anywhere in the variables, keys included", () => {
    expect(refusal(() => checkBeforeParsing({ query: "{}", variables: { e: "a\u0000b" } }, limits))).toMatch(/NUL/);
    expect(refusal(() => checkBeforeParsing({ query: "{}", variables: { x: { "k\u0000": 1 } } }, limits))).toMatch(/NUL/);
  });
});

describe("after validation", () => {
  it("applies variable defaults, so the rules see the value execution will use", () => {
    const { document, operation, variables } = check(`mutation($e: String! = "x@y.co") { login(email: $e, password: "p") }`);
    expect(variables).toEqual({ e: "x@y.co" });
    expect(selectedFields(schema, document, operation, variables)[0]?.args).toEqual({ email: "x@y.co", password: "p" });
  });

  it("refuses required variables missing or null, and values of the wrong type", () => {
    expect(refusal(() => check(`query($id: ID!) { account(id: $id) }`, {}))).toMatch(/"\$id" of required type "ID!" was not provided/);
    expect(refusal(() => check(`query($id: ID!) { account(id: $id) }`, { id: null }))).toMatch(
      /"\$id" of non-null type "ID!" must not be null/,
    );
    expect(refusal(() => check(`mutation($t: AccountType!) { open(type: $t) }`, { t: "SAVING" }))).toMatch(/SAVING/);
  });

  it("names the problem when the operation to run is unclear", () => {
    expect(refusal(() => check(`query A { account(id: "1") } query B { account(id: "2") }`))).toMatch(/operationName/);
    expect(refusal(() => check(`query A { account(id: "1") }`, {}, "B"))).toMatch(/No operation named "B"/);
    expect(check(`query A { account(id: "1") } query B { account(id: "2") }`, {}, "B").operation.name?.value).toBe("B");
  });

  it("parses custom scalar literals and variables as their subgraphs do", () => {
    for (const literal of [`"abc"`, `1.5`, `"0x10"`, `"1e3"`, `"99999999999999999999"`]) {
      expect(refusal(() => check(`mutation { pay(amountMinor: ${literal}) }`))).toMatch(/MinorUnits/);
    }
    expect(refusal(() => check(`mutation($a: MinorUnits!) { pay(amountMinor: $a) }`, { a: "0x10" }))).toMatch(/\$a.*minor units/);
    expect(check(`mutation($a: MinorUnits!) { pay(amountMinor: $a) }`, { a: "1050" }).variables).toEqual({ a: "1050" });
    expect(() => check(`mutation { pay(amountMinor: "1050") }`)).not.toThrow();
    expect(refusal(() => check(`{ since(at: "yesterday") }`))).toMatch(/DateTime/);
  });

  it("refuses NUL in a literal of the document", () => {
    expect(refusal(() => check(`mutation { pay(amountMinor: "1", note: "a\\u0000b") }`))).toMatch(/NUL/);
    expect(refusal(() => check(`{ account(id: "\\u0000") }`))).toMatch(/NUL/);
  });
});

describe("the same document again (Apollo Server's store and the subscriptions' cache hand out the same object)", () => {
  it("refuses its bad literal every time, and passes a good one with each request's own variables", () => {
    const bad = parse(`mutation { pay(amountMinor: "0x10") }`);
    const badOperation = resolveOperation(bad, undefined);
    const first = refusal(() => checkedVariables(schema, bad, badOperation, {}));
    expect(refusal(() => checkedVariables(schema, bad, badOperation, {}))).toBe(first);

    const good = parse(`mutation Pay($amount: MinorUnits!) { pay(amountMinor: $amount, note: "rent") }`);
    const goodOperation = resolveOperation(good, undefined);
    expect(checkedVariables(schema, good, goodOperation, { amount: "100" })).toEqual({ amount: "100" });
    // Variables are checked on every request, whatever the document's literals did before.
    expect(refusal(() => checkedVariables(schema, good, goodOperation, { amount: "0x10" }))).toMatch(/MinorUnits|minor/i);
    expect(checkedVariables(schema, good, goodOperation, { amount: "7" })).toEqual({ amount: "7" });
  });

  it("checks a document again against another schema", () => {
    const document = parse(`{ since(at: "yesterday") }`);
    const operation = resolveOperation(document, undefined);
    expect(refusal(() => checkedVariables(schema, document, operation, {}))).toBeTruthy();
    const lenient = buildSchema(`type Query { since(at: String): String }`);
    expect(checkedVariables(lenient, document, operation, {})).toEqual({});
  });
});
