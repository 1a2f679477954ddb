/**
 * CPU time of the stack's processes, read from /proc (Linux): the gateway and each subgraph by
 * their entry file, nats-server and redis-server, and the PostgreSQL backends serving the given
 * databases. Two readings around a load phase give each process's CPU per transfer, a number a
 * busy machine changes far less than throughput.
 */
import { readdirSync, readFileSync } from "node:fs";

const CLOCK_TICKS_PER_SECOND = 100;

function processName(cmdline: string, databases: string[]): string | undefined {
  const entry = /(gateway|subgraphs\/(\w+))\/src\/main\.ts/.exec(cmdline);
  if (entry) return entry[2] ?? "gateway";
  if (cmdline.includes("nats-server")) return "nats-server";
  if (cmdline.includes("redis-server")) return "redis-server";
  if (cmdline.startsWith("postgres:") && databases.some((db) => cmdline.includes(` ${db} `))) return "postgres";
  return undefined;
}

/** CPU seconds (user + system) per process name, summed over processes of the same name. */
export function processCpuSeconds(databases: string[]): Record<string, number> {
  const seconds: Record<string, number> = {};
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      const name = processName(cmdline, databases);
      if (!name) continue;
      // Fields after the command name, which is in parentheses and may hold spaces.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
      seconds[name] = (seconds[name] ?? 0) + ticks / CLOCK_TICKS_PER_SECOND;
    } catch {
      // The process ended between listing and reading.
    }
  }
  return seconds;
}

/** Milliseconds of CPU per unit of work between two readings, as "name 12.3" pairs, largest first. */
export function cpuPerUnit(before: Record<string, number>, after: Record<string, number>, units: number): string {
  return Object.entries(after)
    .map(([name, s]) => [name, ((s - (before[name] ?? 0)) * 1000) / units] as const)
    .sort((a, b) => b[1] - a[1])
    .map(([name, ms]) => `${name} ${ms.toFixed(1)}`)
    .join(", ");
}
