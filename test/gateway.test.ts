/** The gateway in front of the whole stack: routing, correlation ids, request events, limits. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEXT_LIMITS, connectJetStream, parseEvent, unbatch } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { startTestStack, type TestStack } from "@vaultpay/testing";

describe("gateway", () => {
  let stack: TestStack & { teardown: () => Promise<void> };

  beforeAll(async () => {
    stack = await startTestStack();
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  it("routes one operation to all five subgraphs and logs it as a gateway.request event", async () => {
    const result = await stack.graphql(
      `query AllStatus { authStatus { service } accountsStatus { service } transactionsStatus { service } fraudStatus { service } auditStatus { service } }`,
      {},
      { "x-correlation-id": "corr-gateway-1", "x-device-id": "device-abc" },
    );
    expect(result.errors).toBeUndefined();
    expect(Object.values(result.data ?? {}).map((status) => (status as { service: string }).service)).toEqual([
      "auth",
      "accounts",
      "transactions",
      "fraud",
      "audit",
    ]);
    expect(result.headers.get("x-correlation-id")).toBe("corr-gateway-1");
    // Account data is never for a shared cache or the browser's: the subgraphs send no cache hints.
    expect(result.headers.get("cache-control")).toBe("no-store");

    expect(await requestEvent("corr-gateway-1")).toMatchObject({
      type: "gateway.request",
      actor: { deviceId: "device-abc" },
      data: { operationName: "AllStatus", operationType: "query", outcome: "success", errorCodes: [] },
    });
  });

  it("records an operation whose name is longer than the event allows, with the name cut", async () => {
    const name = `Op${"x".repeat(400)}`;
    const result = await stack.graphql(`query ${name} { authStatus { service } }`, {}, { "x-correlation-id": "corr-gateway-long-name" });
    expect(result.errors).toBeUndefined();
    const event = await requestEvent("corr-gateway-long-name");
    expect(event?.data).toMatchObject({ operationType: "query", outcome: "success" });
    const recorded = (event!.data as { operationName: string }).operationName;
    expect(recorded).toHaveLength(TEXT_LIMITS.operationNameChars);
    expect(name.startsWith(recorded.slice(0, -1))).toBe(true);
  });

  /** The gateway.request event published under a correlation id, alone or in a batch of reads (waits up to 10 s for it). */
  async function requestEvent(correlationId: string) {
    const link = await connectJetStream(stack.nats.url, "gateway-test", createLogger({ service: "t", level: "silent" }));
    try {
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        const info = await link.jsm.streams.info("GATEWAY");
        for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
          const message = parseEvent((await link.jsm.streams.getMessage("GATEWAY", { seq }))!.json());
          const event = unbatch(message).find((request) => request.correlationId === correlationId);
          if (event) return event;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return undefined;
    } finally {
      await link.nc.close();
    }
  }

  it("creates a correlation id when the caller sends none or a malformed one", async () => {
    const none = await stack.graphql(`{ authStatus { service } }`);
    expect(none.headers.get("x-correlation-id")).toMatch(/^[0-9a-f-]{36}$/);
    const malformed = await stack.graphql(`{ authStatus { service } }`, {}, { "x-correlation-id": "a b\tc" });
    expect(malformed.headers.get("x-correlation-id")).not.toBe("a b\tc");
  });

  it("answers bad operations with a code and no internals", async () => {
    const result = await stack.graphql(`{ nope }`);
    expect(result.errors?.[0]?.extensions).toEqual({ code: "GRAPHQL_VALIDATION_FAILED" });
    const parse = await stack.graphql(`{ authStatus {`);
    expect(parse.errors?.[0]?.extensions).toEqual({ code: "GRAPHQL_PARSE_FAILED" });
  });

  it("zero trust: a subgraph refuses a request that did not come through the gateway", async () => {
    for (const service of ["auth", "accounts", "transactions", "fraud", "audit"] as const) {
      const direct = await fetch(stack.urls[service], {
        method: "POST",
        headers: { "content-type": "application/json", "x-vaultpay-gateway": `${Math.floor(Date.now() / 1000)}.forged` },
        body: JSON.stringify({ query: `{ ${service}Status { service } }` }),
      });
      expect(direct.status).toBe(401);
      const body = (await direct.json()) as { data?: unknown; errors: Array<{ extensions: { code: string } }> };
      expect(body.data).toBeUndefined();
      expect(body.errors[0]?.extensions.code).toBe("UNAUTHENTICATED");
    }
  });

  it("refuses oversized bodies and cross-site simple requests", async () => {
    const huge = await fetch(stack.gatewayUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: `{ authStatus { service } }`, padding: "x".repeat(300 * 1024) }),
    });
    expect(huge.status).toBe(413);
    // A GET without a preflight-forcing header is what a malicious page could send: CSRF prevention.
    const csrf = await fetch(`${stack.gatewayUrl}?query=${encodeURIComponent("{ authStatus { service } }")}`);
    expect(csrf.status).toBe(400);
  });
});
