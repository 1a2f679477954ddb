import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { PortTakenError, waitForHttp } from "./net.ts";

describe("waitForHttp with an instance", () => {
  const servers: http.Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
  });

  async function serve(instance: string | undefined): Promise<string> {
    const server = http.createServer((_request, response) => {
      if (instance) response.setHeader("x-vaultpay-instance", instance);
      response.end("{}");
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`;
  }

  it("accepts the process it started, and names another process on the port as PortTakenError", async () => {
    await expect(waitForHttp(await serve("ours"), 2_000, () => true, "ours")).resolves.toBeUndefined();
    await expect(waitForHttp(await serve("theirs"), 2_000, () => true, "ours")).rejects.toBeInstanceOf(PortTakenError);
    await expect(waitForHttp(await serve(undefined), 2_000, () => true, "ours")).rejects.toThrow(/answered by another process/);
    // Without an instance to expect, any 2xx is ready (infrastructure that is not ours to name).
    await expect(waitForHttp(await serve(undefined), 2_000)).resolves.toBeUndefined();
  });
});
