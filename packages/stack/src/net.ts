import { readFileSync, readdirSync, readlinkSync } from "node:fs";
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

/**
 * Whether process `pid` holds the listening TCP socket on `port` (Linux /proc); undefined where
 * that cannot be told (no /proc, or the process's descriptors are not readable).
 */
export function listenedBy(pid: number, port: number): boolean | undefined {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; state 0A is LISTEN; field 9 is the socket's inode.
      if (fields[1]?.endsWith(`:${hexPort}`) && fields[3] === "0A" && fields[9]) inodes.add(fields[9]);
    }
  }
  if (inodes.size === 0) return undefined;
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? "");
      } catch {
        return false;
      }
    });
  } catch {
    return undefined;
  }
}

/**
 * Waits until something listens on the port. With `owner`, it must be that process: if it exits
 * while another holds the port, or /proc shows the listener is someone else's, PortTakenError.
 */
export async function waitForPort(
  port: number,
  timeoutMs: number,
  owner?: { pid: number | undefined; alive: () => boolean },
): Promise<void> {
  const host = "127.0.0.1";
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
    if (owner && !owner.alive()) {
      if (open) throw new PortTakenError(`port ${port} is held by another process`);
      throw new Error(`the process for port ${port} exited before it listened`);
    }
    if (open) {
      if (owner?.pid !== undefined && listenedBy(owner.pid, port) === false)
        throw new PortTakenError(`port ${port} is held by another process`);
      return;
    }
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
      if (answered !== instance)
        throw new PortTakenError(`${url} is answered by another process (${answered ?? "not a VaultPay stack's"})`);
    }
    if (response?.ok) return;
    if (response) last = `HTTP ${response.status}`;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${url} not ready within ${timeoutMs} ms (${last})`);
}
