import net from "node:net";

/** A connection tries at most this many replicas before it is refused. */
const MAX_ATTEMPTS_PER_CONNECTION = 4;
const CONNECT_TIMEOUT_MS = 2_000;

export interface RoundRobinFront {
  port: number;
  close(): Promise<void>;
}

/**
 * A small TCP front for the replicas of one process on loopback (`pnpm start --cluster`): each new
 * connection goes to the next replica in turn, and to the one after it when that one refuses (a
 * replica that died, or restarts). It forwards bytes, not requests, so HTTP keep-alive and
 * WebSocket upgrades (graphql-ws) pass through untouched; a connection stays with its replica for
 * its whole life, as behind a Kubernetes Service.
 */
export async function startRoundRobinFront(options: {
  port: number;
  host?: string;
  backends: () => readonly number[];
}): Promise<RoundRobinFront> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.pause();
    const backends = options.backends();
    const tryBackend = (attempt: number) => {
      if (attempt >= Math.min(MAX_ATTEMPTS_PER_CONNECTION, backends.length) || client.destroyed) return void client.destroy();
      const port = backends[next++ % backends.length]!;
      const upstream = net.connect({ port, host: "127.0.0.1", timeout: CONNECT_TIMEOUT_MS });
      const fail = () => {
        upstream.destroy();
        tryBackend(attempt + 1);
      };
      upstream.once("error", fail);
      upstream.once("timeout", fail);
      upstream.once("connect", () => {
        upstream.removeListener("error", fail);
        upstream.removeListener("timeout", fail);
        upstream.setTimeout(0);
        sockets.add(upstream);
        upstream.on("close", () => sockets.delete(upstream));
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
        upstream.on("close", () => client.destroy());
        client.on("close", () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryBackend(0);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host ?? "127.0.0.1", () => resolve());
  });
  return {
    port: options.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
