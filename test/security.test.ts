/**
 * The gateway's security layers with the whole stack running: token checks, revoked sessions,
 * deny-by-default rules enforced before any subgraph is called, operation limits, rate limits.
 */
import { generateKeyPairSync, randomUUID } from "node:crypto";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GATEWAY_ASSERTION_HEADER, revokedSessionKey, signGatewayAssertion } from "@vaultpay/kit";
import { mintAccessToken, startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";

type Stack = TestStack & { teardown: () => Promise<void> };

function bearer(token: string) {
  return { authorization: `Bearer ${token}` };
}

function codes(result: { errors?: Array<{ extensions?: Record<string, unknown> }> }) {
  return (result.errors ?? []).map((error) => error.extensions?.code);
}

/**
 * A recording proxy in front of one subgraph: what an attacker on the internal network would
 * capture from the gateway's requests (headers and body), passed on unchanged.
 */
async function startRecordingProxy() {
  const captured: Array<{ headers: Record<string, string>; body: string }> = [];
  let target = "";
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", async () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(request.headers).map(([key, value]) => [key, String(value)]));
      captured.push({ headers, body });
      const { host: _host, "content-length": _length, connection: _connection, ...forwarded } = headers;
      const answer = await fetch(target, { method: request.method, headers: forwarded, body });
      response.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" });
      response.end(await answer.text());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`,
    captured,
    forwardTo: (url: string) => void (target = url),
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe("gateway security", () => {
  let stack: Stack;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  const subgraphLines: string[] = [];

  beforeAll(async () => {
    proxy = await startRecordingProxy();
    stack = await startTestStack({
      gatewaySubgraphUrls: { accounts: proxy.url },
      logLevel: "debug",
      output: (line) => {
        if (!line.startsWith("[gateway]")) subgraphLines.push(line);
      },
    });
  });
  afterAll(async () => {
    await stack?.teardown();
    await proxy?.stop();
  });
  beforeAll(() => proxy.forwardTo(stack.urls.accounts));

  const customer = () => mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER" });

  it("refuses a denied operation before any subgraph is called", async () => {
    const allowedId = `corr-allowed-${randomUUID()}`;
    const allowed = await stack.graphql(`{ authStatus { service } }`, {}, { "x-correlation-id": allowedId });
    expect(allowed.errors).toBeUndefined();
    await waitUntil(
      async () => subgraphLines.some((line) => line.includes(allowedId) && line.includes("subgraph request")),
      "the allowed request in the subgraph log",
    );

    const deniedId = `corr-denied-${randomUUID()}`;
    // A public field beside an admin-only one: the whole operation is refused, nothing partial runs.
    const denied = await stack.graphql(
      `{ authStatus { service } users { id } }`,
      {},
      { "x-correlation-id": deniedId, ...bearer(await customer()) },
    );
    expect(codes(denied)).toEqual(["FORBIDDEN"]);
    expect(denied.data).toBeUndefined();
    const anonymous = await stack.graphql(`{ me { id } }`, {}, { "x-correlation-id": deniedId });
    expect(codes(anonymous)).toEqual(["UNAUTHENTICATED"]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(subgraphLines.filter((line) => line.includes(deniedId))).toEqual([]);
  });

  it("refuses forged, expired, alg-none and wrong-audience tokens", async () => {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const foreignJwk = JSON.stringify({ ...privateKey.export({ format: "jwk" }), kid: JSON.parse(stack.secrets.JWT_PRIVATE_JWK).kid });
    const forged = await mintAccessToken(foreignJwk, { userId: randomUUID(), role: "ADMIN" });
    const expired = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER", expiresInSeconds: -60 });
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      sub: randomUUID(),
      role: "ADMIN",
      sid: "s",
      did: "d",
      jti: "j",
      iss: "vaultpay-auth",
      aud: "vaultpay",
      iat: now,
      exp: now + 600,
    };
    const algNone = `${encode({ alg: "none", typ: "JWT" })}.${encode(claims)}.`;
    const valid = await customer();
    const [header, , signature] = valid.split(".");
    const wrongAudience = `${header}.${encode({ ...claims, aud: "someone-else" })}.${signature}`;

    for (const token of [forged, expired, algNone, wrongAudience, "not-a-jwt-at-all"]) {
      const result = await stack.graphql(`{ authStatus { service } }`, {}, bearer(token));
      expect(codes(result)).toEqual(["UNAUTHENTICATED"]);
      expect(result.data).toBeUndefined();
    }
    const expiredResult = await stack.graphql(`{ authStatus { service } }`, {}, bearer(expired));
    expect(expiredResult.errors?.[0]?.message).toMatch(/expired/i);
  });

  it("lets a customer reach customer fields but not admin fields, and an admin both", async () => {
    const token = await customer();
    const admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
    expect(codes(await stack.graphql(`{ users { id } }`, {}, bearer(token)))).toEqual(["FORBIDDEN"]);
    expect(
      codes(
        await stack.graphql(`mutation { depositFunds(accountId: "x", amountMinor: "1", idempotencyKey: "k") { id } }`, {}, bearer(token)),
      ),
    ).toEqual(["FORBIDDEN"]);
    // Past the gateway's rules the subgraph decides: here, that no such account exists.
    const deposit = await stack.graphql(
      `mutation { depositFunds(accountId: "${randomUUID()}", amountMinor: "100", idempotencyKey: "key-${randomUUID()}") { id } }`,
      {},
      bearer(admin),
    );
    expect(codes(deposit)).toEqual(["NOT_FOUND"]);
  });

  it("refuses a captured gateway assertion sent straight to a subgraph, with the same body or another", async () => {
    const token = await customer();
    const correlationId = `corr-capture-${randomUUID()}`;
    const through = await stack.graphql(`{ myAccounts { id } }`, {}, { ...bearer(token), "x-correlation-id": correlationId });
    expect(codes(through)).toEqual([]);
    const capture = proxy.captured.find((request) => request.headers["x-correlation-id"] === correlationId);
    expect(capture?.headers[GATEWAY_ASSERTION_HEADER]).toMatch(/^\d+\./);
    const replay = async (body: string) => {
      const { host: _host, "content-length": _length, connection: _connection, ...headers } = capture!.headers;
      const response = await fetch(stack.urls.accounts, { method: "POST", headers, body });
      return (await response.json()) as { data?: unknown; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
    };
    // Not even the same body again within the minute (its nonce is spent), nor another query, nor
    // the same one altered.
    for (const other of [
      capture!.body,
      JSON.stringify({ query: `{ myAccounts { id number balance { minor } } }` }),
      capture!.body.replace("myAccounts", "myAccounts "),
    ]) {
      const refused = await replay(other);
      expect(codes(refused)).toEqual(["UNAUTHENTICATED"]);
      expect(refused.errors?.[0]?.message).toBe("Requests must come through the gateway");
      expect(refused.data ?? null).toBeNull();
    }
    // Nor at another subgraph: a nonce is spent for all of them.
    const { host: _host, "content-length": _length, connection: _connection, ...headers } = capture!.headers;
    const elsewhere = (await (await fetch(stack.urls.transactions, { method: "POST", headers, body: capture!.body })).json()) as {
      errors?: Array<{ extensions?: Record<string, unknown> }>;
    };
    expect(codes(elsewhere)).toEqual(["UNAUTHENTICATED"]);
    // A fresh assertion for the same body, signed as the gateway signs, is accepted once.
    const fresh = {
      ...headers,
      [GATEWAY_ASSERTION_HEADER]: signGatewayAssertion(stack.secrets.GATEWAY_SECRET, { correlationId, body: capture!.body }),
    };
    const once = async () =>
      (await (await fetch(stack.urls.accounts, { method: "POST", headers: fresh, body: capture!.body })).json()) as {
        errors?: Array<{ extensions?: Record<string, unknown> }>;
      };
    expect(codes(await once())).toEqual([]);
    expect(codes(await once())).toEqual(["UNAUTHENTICATED"]);
  });

  it("keeps the revocations in a Redis that refuses a client without the stack's password", async () => {
    const url = new URL(stack.redisUrl);
    expect(url.password.length).toBeGreaterThanOrEqual(24);
    // What anything on the machine could send: a revoked session's key deleted, without the password.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(url.port), url.hostname, () => socket.write(`DEL ${revokedSessionKey(randomUUID())}\r\n`));
      socket.once("data", (data) => {
        resolve(data.toString("utf8"));
        socket.destroy();
      });
      socket.once("error", reject);
    });
    expect(answer).toMatch(/^-NOAUTH/);
  });

  it("refuses the tokens of a revoked session", async () => {
    const sessionId = randomUUID();
    const token = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER", sessionId });
    expect(codes(await stack.graphql(`{ authStatus { service } }`, {}, bearer(token)))).toEqual([]);
    const redis = new Redis(stack.redisUrl);
    try {
      await redis.set(revokedSessionKey(sessionId), "1", "EX", 900);
    } finally {
      redis.disconnect();
    }
    const result = await stack.graphql(`{ authStatus { service } }`, {}, bearer(token));
    expect(codes(result)).toEqual(["UNAUTHENTICATED"]);

    // Zero trust: a subgraph checks the revocation itself, even for a request that did pass a gateway.
    const correlationId = `corr-${randomUUID()}`;
    const direct = await fetch(stack.urls.accounts, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-correlation-id": correlationId,
        [GATEWAY_ASSERTION_HEADER]: signGatewayAssertion(stack.secrets.GATEWAY_SECRET, {
          correlationId,
          body: JSON.stringify({ query: `{ myAccounts { id } }` }),
        }),
        ...bearer(token),
      },
      body: JSON.stringify({ query: `{ myAccounts { id } }` }),
    });
    const body = (await direct.json()) as { errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
    expect(codes(body)).toEqual(["UNAUTHENTICATED"]);
    expect(body.errors?.[0]?.message).toMatch(/Session has ended/);
  });
});

describe("gateway limits", () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startTestStack({
      env: {
        RATE_LIMIT_OPERATIONS: "5",
        RATE_LIMIT_CREDENTIAL_ATTEMPTS: "2",
        RATE_LIMIT_WINDOW_SECONDS: "2",
        MAX_QUERY_DEPTH: "2",
        MAX_QUERY_ALIASES: "2",
        // As behind one load balancer: its x-forwarded-for entry names the client.
        TRUSTED_PROXY_HOPS: "1",
      },
    });
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  it("refuses operations that are too deep or too aliased", async () => {
    const deep = await stack.graphql(`{ me { devices { id } } }`);
    expect(codes(deep)).toEqual(["BAD_USER_INPUT"]);
    expect(deep.errors?.[0]?.message).toMatch(/too deep/);
    const aliased = await stack.graphql(`{ a: authStatus { service } b: authStatus { service } c: authStatus { service } }`);
    expect(codes(aliased)).toEqual(["BAD_USER_INPUT"]);
  });

  it("rate-limits by caller, answers RATE_LIMITED with retryAfterSeconds, and recovers", async () => {
    await new Promise((resolve) => setTimeout(resolve, 2_100)); // a fresh window
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await stack.graphql(`{ authStatus { service } }`));
    expect(results.slice(0, 5).every((result) => result.errors === undefined)).toBe(true);
    const limited = results[5]!;
    expect(codes(limited)).toEqual(["RATE_LIMITED"]);
    expect(limited.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(limited.headers.get("retry-after")).toBeTruthy();

    await new Promise((resolve) => setTimeout(resolve, 2_100));
    expect((await stack.graphql(`{ authStatus { service } }`)).errors).toBeUndefined();
  });

  it("meters the client a trusted proxy hop names, not the proxy nor what the client wrote", async () => {
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const from = (forwarded: string) => stack.graphql(`{ authStatus { service } }`, {}, { "x-forwarded-for": forwarded });
    for (let i = 0; i < 5; i++) expect(codes(await from(`10.9.9.${i}, 198.51.100.1`))).toEqual([]);
    // Another left part, written by the same client, does not buy a fresh meter ...
    expect(codes(await from("10.9.9.99, 198.51.100.1"))).toEqual(["RATE_LIMITED"]);
    // ... while another client behind the same proxy (the same socket peer) has its own.
    expect(codes(await from("10.9.9.1, 198.51.100.2"))).toEqual([]);
  });

  it("limits credential attempts more strictly, also when batched with aliases", async () => {
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const login = `mutation { a: login(email: "victim@example.com", password: "guess-1-guess-1", deviceId: "d1") { challengeId } b: login(email: "victim@example.com", password: "guess-2-guess-2", deviceId: "d1") { challengeId } }`;
    const batched = await stack.graphql(login);
    // Two attempts fit the limit of 2; the third in the next request does not.
    expect(codes(batched)).not.toContain("RATE_LIMITED");
    const third = await stack.graphql(
      `mutation { login(email: "victim@example.com", password: "guess-3-guess-3", deviceId: "d1") { challengeId } }`,
    );
    expect(codes(third)).toEqual(["RATE_LIMITED"]);
  });
});
