import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startRoundRobinFront, type RoundRobinFront } from "./front.ts";
import { freePort } from "./net.ts";

/** An HTTP server that answers its name, and switches protocols on an upgrade, echoing bytes. */
async function backend(name: string): Promise<http.Server> {
  const server = http.createServer((_request, response) => response.end(name));
  const upgraded = new Set<import("node:stream").Duplex>();
  server.on("close", () => {
    for (const socket of upgraded) socket.destroy();
  });
  server.on("upgrade", (_request, socket) => {
    upgraded.add(socket);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nx-backend: ${name}\r\n\r\n`);
    socket.on("data", (chunk) => socket.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

const portOf = (server: http.Server) => (server.address() as AddressInfo).port;
const get = async (port: number) => (await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: "close" } })).text();

describe("round-robin front", () => {
  const closing: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const close of closing.splice(0)) await close();
  });

  it("sends each connection to the next replica, skips one that refuses, and passes an upgrade through", async () => {
    const [a, b] = await Promise.all([backend("a"), backend("b")]);
    const dead = await freePort();
    // Upgraded sockets are no longer the HTTP server's: closing it would wait for them forever.
    const shut = (server: http.Server) => () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
        server.emit("close");
      });
    closing.push(shut(a), shut(b));
    const front: RoundRobinFront = await startRoundRobinFront({ port: await freePort(), backends: () => [portOf(a), dead, portOf(b)] });
    closing.unshift(() => front.close());

    const answers = [];
    for (let index = 0; index < 6; index++) answers.push(await get(front.port));
    // The dead replica's turns go to the next one.
    expect(answers.filter((answer) => answer === "a").length).toBeGreaterThan(0);
    expect(answers.filter((answer) => answer === "b").length).toBeGreaterThan(0);
    expect(answers.every((answer) => answer === "a" || answer === "b")).toBe(true);

    const echoed = await new Promise<string>((resolve, reject) => {
      const request = http.request({ port: front.port, host: "127.0.0.1", headers: { connection: "Upgrade", upgrade: "echo" } });
      request.on("upgrade", (response, socket) => {
        expect(response.statusCode).toBe(101);
        socket.once("data", (chunk) => {
          resolve(chunk.toString());
          socket.destroy();
        });
        socket.write("ping over the upgraded connection");
      });
      request.on("error", reject);
      request.end();
    });
    expect(echoed).toBe("ping over the upgraded connection");
  });

  it("refuses a connection when no replica answers", async () => {
    const dead = await freePort();
    const front = await startRoundRobinFront({ port: await freePort(), backends: () => [dead] });
    closing.push(() => front.close());
    await expect(get(front.port)).rejects.toThrow();
  });
});
