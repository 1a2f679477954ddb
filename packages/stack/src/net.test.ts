import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { PortTakenError, ephemeralPortRange, freePort, freePortRun, isPortFree, listenedBy, waitForHttp, waitForPort } from "./net.ts";

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

  it("tells whose listener holds a port, so a server that lost the port to another is not taken for ready", async () => {
    const url = await serve(undefined);
    const port = Number(new URL(url).port);
    expect(listenedBy(process.pid, port)).toBe(true);
    // Another process (a shell that sleeps) does not hold it: waiting on its behalf fails at once.
    const other = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      expect(listenedBy(other.pid!, port)).toBe(false);
      await expect(waitForPort(port, 2_000, { pid: other.pid, alive: () => true })).rejects.toBeInstanceOf(PortTakenError);
      await expect(waitForPort(port, 2_000, { pid: other.pid, alive: () => false })).rejects.toBeInstanceOf(PortTakenError);
      await expect(waitForPort(port, 2_000, { pid: process.pid, alive: () => true })).resolves.toBeUndefined();
    } finally {
      other.kill();
    }
  });
});

describe("freePort", () => {
  it("chooses free ports below the range outgoing connections take their local ports from", async () => {
    const [low] = ephemeralPortRange();
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(10_000);
      expect(port).toBeLessThan(low);
    }
    const first = await freePortRun(6);
    expect(first + 5).toBeLessThan(low);
    const run = Array.from({ length: 6 }, (_, index) => first + index);
    expect(await Promise.all(run.map(isPortFree))).toEqual(run.map(() => true));
    // Held, a chosen port is no longer free.
    const held = http.createServer();
    await new Promise<void>((resolve) => held.listen(first, "127.0.0.1", resolve));
    try {
      expect(await isPortFree(first)).toBe(false);
    } finally {
      await new Promise((resolve) => held.close(resolve));
    }
  });
});
