import net from "node:net";

/** A port the OS says is free now (best effort: another process may take it before we bind). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** The preferred port when free (stable URLs across restarts), else any free one. */
export async function portNear(preferred: number): Promise<number> {
  return preferred > 0 && (await isPortFree(preferred)) ? preferred : freePort();
}

export async function waitForPort(port: number, timeoutMs: number, host = "127.0.0.1"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, host);
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listened on ${host}:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Another process answers on the port a started process was given (it lost the race for it). */
export class PortTakenError extends Error {}

/**
 * Polls an HTTP URL until it answers 2xx. With `instance`, the answer must carry it in
 * `x-vaultpay-instance`: a free port can be taken by someone else between choosing and binding it,
 * and a ready answer from that other process must not pass for ours (PortTakenError).
 */
export async function waitForHttp(url: string, timeoutMs: number, isAlive: () => boolean = () => true, instance?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (!isAlive()) throw new Error(`process exited before ${url} was ready`);
    let response: Response | undefined;
    try {
      response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
    } catch (error) {
      last = String(error);
    }
    if (response && instance !== undefined) {
      const answered = response.headers.get("x-vaultpay-instance");
      if (answered !== instance) throw new PortTakenError(`${url} is answered by another process (${answered ?? "not a VaultPay stack's"})`);
    }
    if (response?.ok) return;
    if (response) last = `HTTP ${response.status}`;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms (${last})`);
}
