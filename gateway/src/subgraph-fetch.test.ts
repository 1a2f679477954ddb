/** The subgraph fetcher against a real HTTP server: what Apollo's RemoteGraphQLDataSource reads of a response. */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSubgraphFetcher } from "./subgraph-fetch.ts";

describe("subgraph fetcher", () => {
  let server: http.Server;
  let url: string;
  const fetcher = createSubgraphFetcher();

  beforeAll(async () => {
    server = http.createServer((request, response) => {
      let body = "";
      request.on("data", (chunk) => {
        body += chunk;
      });
      request.on("end", () => {
        const status = request.url === "/refused" ? 401 : 200;
        response.writeHead(status, { "content-type": "application/json; charset=utf-8", "x-echo-method": request.method ?? "" });
        response.end(JSON.stringify({ data: { body, correlationId: request.headers["x-correlation-id"] ?? null } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("sends the method, headers and body, and answers with status, headers and a JSON body", async () => {
    const response = await fetcher(`${url}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-correlation-id": "corr-1" },
      body: '{"query":"{ __typename }"}',
    });
    expect(response.ok).toBe(true);
    expect(response.status).toBe(200);
    expect(response.url).toBe(`${url}/graphql`);
    // Apollo asks for Content-Type in this spelling before choosing json() over text().
    expect(response.headers.get("Content-Type")).toBe("application/json; charset=utf-8");
    expect(response.headers.get("x-echo-method")).toBe("POST");
    expect(await response.clone().json()).toEqual({ data: { body: '{"query":"{ __typename }"}', correlationId: "corr-1" } });
    expect(JSON.parse(await response.text())).toMatchObject({ data: { correlationId: "corr-1" } });
  });

  it("reports a non-2xx status as not ok, with its body readable (the gateway maps it to a public error)", async () => {
    const response = await fetcher(`${url}/refused`, { method: "POST", headers: {}, body: "{}" });
    expect(response.ok).toBe(false);
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ data: { body: "{}" } });
  });

  it("fails with the socket's code when nothing listens (counted as a dependency away, not a bug)", async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await expect(fetcher(`http://127.0.0.1:${port}/graphql`, { method: "POST", headers: {}, body: "{}" })).rejects.toMatchObject({
      code: "ECONNREFUSED",
    });
  });
});
