/**
 * The gateway's door against a careless client and a flooder, with the whole stack running: every
 * client mistake comes back as a client error code with a clear message (never INTERNAL), invalid
 * and oversized documents are metered and refused before parsing, introspection fields count
 * against the limits, and suggestions are off whenever introspection is.
 */
import { randomUUID } from "node:crypto";
import { createClient } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintAccessToken, startTestStack, type TestStack } from "@vaultpay/testing";

type Stack = TestStack & { teardown: () => Promise<void> };
type Result = Awaited<ReturnType<TestStack["graphql"]>>;

function codes(result: { errors?: Array<{ extensions?: Record<string, unknown> }> }) {
  return (result.errors ?? []).map((error) => error.extensions?.code);
}

/** A client error: one of the listed codes, never INTERNAL, and a message that says what is wrong. */
function expectClientError(result: Result, code: string, message: RegExp) {
  expect(codes(result), JSON.stringify(result.errors)).toEqual([code]);
  expect(result.errors?.[0]?.message).toMatch(message);
  expect(result.data ?? undefined).toBeUndefined();
}

function base64url(text: string) {
  return Buffer.from(text, "utf8").toString("base64url");
}

/** Sends one graphql-ws subscribe and returns the first errors (or payload) the gateway answers. */
async function subscribeOnce(stack: Stack, token: string, query: string, variables: Record<string, unknown>) {
  const client = createClient({
    url: stack.gatewayUrl.replace(/^http/, "ws"),
    connectionParams: { authorization: `Bearer ${token}` },
    lazy: true,
    retryAttempts: 0,
  });
  try {
    return await new Promise<{ errors?: Array<{ message: string; extensions?: Record<string, unknown> }> }>((resolve) => {
      client.subscribe(
        { query, variables },
        {
          next: (message) => resolve(message as never),
          error: (error) => resolve({ errors: Array.isArray(error) ? error : [{ message: String((error as Error)?.message ?? error) }] }),
          complete: () => resolve({}),
        },
      );
    });
  } finally {
    await client.dispose();
  }
}

/** A whole stack logging at info, with the gateway's lines kept for the test to read. */
async function stackWithGatewayLog(env: Record<string, string> = {}): Promise<{ stack: Stack; gatewayLines: string[] }> {
  const gatewayLines: string[] = [];
  const output = (line: string) => {
    if (line.startsWith("[gateway]")) gatewayLines.push(line);
  };
  return { stack: await startTestStack({ logLevel: "info", output, env }), gatewayLines };
}

describe("client mistakes are client errors", () => {
  let stack: Stack;
  let customer: string;
  let admin: string;
  let gatewayLines: string[] = [];

  beforeAll(async () => {
    ({ stack, gatewayLines } = await stackWithGatewayLog());
    customer = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER" });
    admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  const as = (token: string) => ({ authorization: `Bearer ${token}` });
  const deposit = `mutation($id: ID!) { depositFunds(accountId: $id, amountMinor: "100", idempotencyKey: "k-1") { id } }`;

  it("a required variable missing or null is BAD_USER_INPUT", async () => {
    expectClientError(await stack.graphql(deposit, {}, as(admin)), "BAD_USER_INPUT", /\$id.*(not provided|must not be null)/);
    expectClientError(await stack.graphql(deposit, { id: null }, as(admin)), "BAD_USER_INPUT", /\$id.*must not be null/);
    expectClientError(await stack.graphql(deposit, { id: { nested: true } }, as(admin)), "BAD_USER_INPUT", /\$id/);
  });

  it("an operation relying on a variable's default runs", async () => {
    const login = await stack.graphql<{ login: { challengeId: string } }>(
      // The stack's development administrator: a correct login answers with an OTP challenge.
      `mutation($e: String! = "admin@vaultpay.local") { login(email: $e, password: "VaultPay-dev-admin-1", deviceId: "device-1") { challengeId } }`,
    );
    expect(login.errors).toBeUndefined();
    expect(login.data?.login.challengeId).toBeTruthy();
  });

  it("a 5,000-deep array variable is refused without overflowing anything", async () => {
    // Written out by hand: JSON.stringify itself overflows on it.
    const deep = `${"[".repeat(5_000)}"x"${"]".repeat(5_000)}`;
    const post = async (query: string, variables: string) => {
      const response = await fetch(stack.gatewayUrl, {
        method: "POST",
        headers: { "content-type": "application/json", ...as(customer) },
        body: `{"query":${JSON.stringify(query)},"variables":${variables}}`,
      });
      return (await response.json()) as Result;
    };
    expectClientError(await post(`query($id: ID!) { account(id: $id) { id } }`, `{"id":${deep}}`), "BAD_USER_INPUT", /nested too deep/);
    // Also where the variable is declared as a list (coercion would walk it) and where it is unused.
    expectClientError(await post(`query($x: [ID!]) { me { id } }`, `{"x":${deep}}`), "BAD_USER_INPUT", /nested too deep/);
    expectClientError(await post(`{ me { id } }`, `{"unused":${deep}}`), "BAD_USER_INPUT", /nested too deep/);
  });

  it("several operations without operationName is a client error", async () => {
    const result = await stack.graphql(`query A { authStatus { service } } query B { authStatus { service } }`);
    expectClientError(result, "BAD_USER_INPUT", /operationName/);
    const unknown = await fetch(stack.gatewayUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: `query A { authStatus { service } }`, operationName: "B" }),
    });
    expectClientError((await unknown.json()) as Result, "BAD_USER_INPUT", /operation named "B"/);
  });

  it("an invalid MinorUnits literal is BAD_USER_INPUT, as the same value in a variable is", async () => {
    for (const literal of [`"abc"`, `1.5`, `"0x10"`, `"1e3"`, `"99999999999999999999"`]) {
      const inline = await stack.graphql(
        `mutation { initiateTransfer(fromAccountId: "${randomUUID()}", toAccountNumber: "1234567890", amountMinor: ${literal}, idempotencyKey: "k-${randomUUID()}") { id } }`,
        {},
        as(customer),
      );
      expectClientError(inline, "BAD_USER_INPUT", /MinorUnits/);
    }
    const variable = await stack.graphql(
      `mutation($a: MinorUnits!) { initiateTransfer(fromAccountId: "${randomUUID()}", toAccountNumber: "1234567890", amountMinor: $a, idempotencyKey: "k-${randomUUID()}") { id } }`,
      { a: "0x10" },
      as(customer),
    );
    expectClientError(variable, "BAD_USER_INPUT", /MinorUnits/);
  });

  it("a NUL character in any string, variable or literal, is refused at the door", async () => {
    const login = `mutation($e: String!) { login(email: $e, password: "not-the-password-1", deviceId: "device-1") { challengeId } }`;
    expectClientError(await stack.graphql(login, { e: "a\u0000@example.com" }), "BAD_USER_INPUT", /NUL/);
    const transfer = `mutation($from: ID!, $key: String!, $note: String) {
      initiateTransfer(fromAccountId: $from, toAccountNumber: "1234567890", amountMinor: "100", idempotencyKey: $key, note: $note) { id } }`;
    expectClientError(
      await stack.graphql(transfer, { from: randomUUID(), key: "k", note: "hi\u0000" }, as(customer)),
      "BAD_USER_INPUT",
      /NUL/,
    );
    expectClientError(await stack.graphql(transfer, { from: randomUUID(), key: "k\u0000" }, as(customer)), "BAD_USER_INPUT", /NUL/);
    expectClientError(
      await stack.graphql(`query($id: ID!) { account(id: $id) { id } }`, { id: "\u0000" }, as(customer)),
      "BAD_USER_INPUT",
      /NUL/,
    );
    // The escape inside a literal in the document.
    expectClientError(await stack.graphql(`{ transfer(id: "a\\u0000b") { id } }`, {}, as(customer)), "BAD_USER_INPUT", /NUL/);
  });

  it("a crafted myTransfers cursor is BAD_USER_INPUT", async () => {
    const page = `query($after: String) { myTransfers(first: 5, after: $after) { edges { cursor } } }`;
    for (const cursor of [
      base64url(`2026-01-01T00:00:00.000Z|not-a-uuid`),
      base64url(`2026-01-01T00:00:00.000Z|${randomUUID()}' OR 1=1 --`),
      base64url(`-100000-01-01T00:00:00.000Z|${randomUUID()}`),
      base64url(`+275760-09-13T00:00:00.000Z|${randomUUID()}`),
      base64url(`1|${randomUUID()}`),
      "%%%",
    ]) {
      expectClientError(await stack.graphql(page, { after: cursor }, as(customer)), "BAD_USER_INPUT", /cursor/);
    }
  });

  it("ids that are not uuids are NOT_FOUND, never INTERNAL", async () => {
    for (const id of ["x", "1", "0".repeat(5_000)]) {
      const account = await stack.graphql(`query($id: ID!) { account(id: $id) { id } }`, { id }, as(customer));
      expect(codes(account)).not.toContain("INTERNAL");
      const transfer = await stack.graphql(`query($id: ID!) { transfer(id: $id) { id } }`, { id }, as(customer));
      expect(codes(transfer)).not.toContain("INTERNAL");
      const deposit = await stack.graphql(
        `mutation($id: ID!) { depositFunds(accountId: $id, amountMinor: "1", idempotencyKey: "k-${randomUUID()}") { id } }`,
        { id },
        as(admin),
      );
      expect(codes(deposit)).toEqual(["NOT_FOUND"]);
      const initiate = await stack.graphql(
        `mutation($id: ID!) { initiateTransfer(fromAccountId: $id, toAccountNumber: "1234567890", amountMinor: "1", idempotencyKey: "k-${randomUUID()}") { id } }`,
        { id },
        as(customer),
      );
      expect(codes(initiate)).not.toContain("INTERNAL");
    }
  });

  it("overlong strings are BAD_USER_INPUT, never INTERNAL", async () => {
    const long = "a".repeat(20_000);
    const probes: Array<[string, Record<string, unknown>, Record<string, string>]> = [
      [
        `mutation($e: String!) { login(email: $e, password: "not-the-password-1", deviceId: "device-1") { challengeId } }`,
        { e: `${long}@example.com` },
        {},
      ],
      [
        `mutation($d: String!) { login(email: "x@example.com", password: "not-the-password-1", deviceId: $d) { challengeId } }`,
        { d: long },
        {},
      ],
      [
        `mutation($k: String!, $n: String) { initiateTransfer(fromAccountId: "${randomUUID()}", toAccountNumber: "1234567890", amountMinor: "1", idempotencyKey: $k, note: $n) { id } }`,
        { k: long, n: "n" },
        as(customer),
      ],
      [
        `mutation($k: String!, $n: String) { initiateTransfer(fromAccountId: "${randomUUID()}", toAccountNumber: "1234567890", amountMinor: "1", idempotencyKey: $k, note: $n) { id } }`,
        { k: "k", n: long },
        as(customer),
      ],
      [`query($c: String) { auditLog(correlationId: $c) { id } }`, { c: long }, as(admin)],
      [`query($t: String!) { devMailbox(to: $t) { body } }`, { t: long }, {}],
    ];
    for (const [query, variables, headers] of probes) {
      const result = await stack.graphql(query, variables, headers);
      expect(codes(result), `${query} ${JSON.stringify(result.errors)}`).not.toContain("INTERNAL");
    }
  });

  it("the same mistakes over graphql-ws are client errors too", async () => {
    const subscription = `subscription($id: ID!) { transferStatusChanged(id: $id) { status } }`;
    const missing = await subscribeOnce(stack, customer, subscription, {});
    expect(codes(missing)).toEqual(["BAD_USER_INPUT"]);
    const nul = await subscribeOnce(stack, customer, subscription, { id: "a\u0000" });
    expect(codes(nul)).toEqual(["BAD_USER_INPUT"]);
    const tokens = await subscribeOnce(stack, customer, `subscription { ${'transferStatusChanged(id: "x") { status } '.repeat(200)}}`, {});
    expect(codes(tokens)).toEqual(["GRAPHQL_PARSE_FAILED"]);
    expect(tokens.errors?.[0]?.message).toMatch(/tokens/);
  });

  it("logs no stack for any of these client errors", () => {
    const stacks = gatewayLines.filter((line) => line.includes('"stack"'));
    expect(stacks, stacks.slice(0, 2).join("\n")).toEqual([]);
    expect(gatewayLines.filter((line) => / ERROR /.test(line))).toEqual([]);
  });
});

describe("the door before parsing", () => {
  let stack: Stack;
  let gatewayLines: string[] = [];

  beforeAll(async () => {
    ({ stack, gatewayLines } = await stackWithGatewayLog({
      RATE_LIMIT_REQUESTS_PER_IP: "20",
      RATE_LIMIT_WINDOW_SECONDS: "3",
      MAX_QUERY_ALIASES: "5",
    }));
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  it("caps document size and tokens before parsing", async () => {
    const large = await stack.graphql(`{ authStatus { service } }${" ".repeat(16_000)}`);
    expectClientError(large, "BAD_USER_INPUT", /Document is too large/);
    const tokens = await stack.graphql(`{ ${"authStatus { service } ".repeat(300)}}`);
    expectClientError(tokens, "GRAPHQL_PARSE_FAILED", /1000 tokens/);
  });

  it("counts introspection fields against the limits", async () => {
    const aliased = await stack.graphql(`{ ${Array.from({ length: 6 }, (_, i) => `s${i}: __schema { queryType { name } }`).join(" ")} }`);
    expectClientError(aliased, "BAD_USER_INPUT", /too many aliases/);
    const typename = await stack.graphql(`{ ${Array.from({ length: 6 }, (_, i) => `t${i}: __typename`).join(" ")} }`);
    expectClientError(typename, "BAD_USER_INPUT", /too many aliases/);
  });

  it("meters invalid documents per address, before parsing, and logs them without stacks", async () => {
    await new Promise((resolve) => setTimeout(resolve, 3_100)); // a fresh window
    const results: Result[] = [];
    for (let i = 0; i < 22; i++) results.push(await stack.graphql(`{ authStatus { ${"(".repeat(i)}`));
    expect(results.slice(0, 20).every((result) => codes(result)[0] === "GRAPHQL_PARSE_FAILED")).toBe(true);
    const limited = results[20]!;
    expect(codes(limited)).toEqual(["RATE_LIMITED"]);
    expect(limited.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(limited.headers.get("retry-after")).toBeTruthy();
    // Valid operations from the same address wait as well.
    expect(codes(await stack.graphql(`{ authStatus { service } }`))).toEqual(["RATE_LIMITED"]);
    expect(gatewayLines.filter((line) => line.includes('"stack"'))).toEqual([]);
  });
});

describe("suggestions while introspection is off", () => {
  let stack: Stack;

  beforeAll(async () => {
    // The door of production without its SMTP setup (test/production.test.ts runs the real thing).
    stack = await startTestStack({ env: { GRAPHQL_INTROSPECTION: "false" } });
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  it("answers without 'Did you mean' while introspection is off", async () => {
    const introspection = await stack.graphql(`{ __schema { queryType { name } } }`);
    expect(codes(introspection)).toEqual(["GRAPHQL_VALIDATION_FAILED"]);
    const field = await stack.graphql(`{ myAccount { id } }`);
    expect(codes(field)).toEqual(["GRAPHQL_VALIDATION_FAILED"]);
    expect(field.errors?.[0]?.message).not.toMatch(/Did you mean/);
    const customer = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER" });
    const enumValue = await stack.graphql(
      `mutation($t: AccountType!) { openAccount(type: $t) { id } }`,
      { t: "SAVING" },
      { authorization: `Bearer ${customer}` },
    );
    expect(codes(enumValue)).toEqual(["BAD_USER_INPUT"]);
    expect(enumValue.errors?.[0]?.message).not.toMatch(/Did you mean/);
    const argument = await stack.graphql(`{ myTransfers(frist: 1) { edges { cursor } } }`);
    expect(argument.errors?.[0]?.message).not.toMatch(/Did you mean/);
  });
});
