import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import net from "node:net";

/**
 * Linux's range for the local ports of outgoing connections (/proc/sys/net/ipv4/ip_local_port_range;
 * IANA's 49152–65535 where that cannot be read).
 */
export function ephemeralPortRange(): [number, number] {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // not Linux, or /proc not mounted
  }
  return [49_152, 65_535];
}

const LOWEST_CHOSEN_PORT = 10_000;

/**
 * A run of `length` consecutive ports that are free now, below the ephemeral range. A port the OS
 * hands out for `listen(0)` lies inside that range, where any process's outgoing connection can take
 * it between choosing it and binding it: on a busy machine (a parallel test run) that happened
 * (EADDRINUSE in the cluster test, a subgraph's port in `pnpm start`'s test). Below the range only
 * another explicit bind can take it. Still best effort: a caller that spawns a process checks that
 * its own process listens there (waitForPort's owner, waitForHttp's instance).
 */
export async function freePortRun(length: number): Promise<number> {
  const ceiling = ephemeralPortRange()[0] - length;
  if (ceiling - LOWEST_CHOSEN_PORT < 1_000) return osFreePort();
  for (let attempt = 0; attempt < 200; attempt++) {
    const first = LOWEST_CHOSEN_PORT + Math.floor(Math.random() * (ceiling - LOWEST_CHOSEN_PORT));
    const ports = Array.from({ length }, (_, index) => first + index);
    if ((await Promise.all(ports.map(isPortFree))).every(Boolean)) return first;
  }
  throw new Error(`no run of ${length} free ports between ${LOWEST_CHOSEN_PORT} and ${ceiling + length}`);
}

/** A port that is free now, below the ephemeral range (see freePortRun). */
export function freePort(): Promise<number> {
  return freePortRun(1);
}

/** A port the OS hands out: free now, inside the ephemeral range. */
function osFreePort(): Promise<number> {
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
