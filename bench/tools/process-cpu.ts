/**
 * CPU time of the stack's processes, read from /proc (Linux): the gateway and each subgraph by
 * their entry file, nats-server and redis-server, and the PostgreSQL backends serving the given
 * databases (all together as "postgres", and per service as "pg:<service>" when the databases are
 * given by service). Two readings around a load phase give each process's CPU per transfer, a
 * number a busy machine changes far less than throughput. "(kernel, all)" is the system-time part
 * of all of them together (system calls: sockets, fsync), already inside each process's number;
 * "kernel:<name>" is that part per process (see kernelPerUnit).
 */
import { readdirSync, readFileSync } from "node:fs";

const CLOCK_TICKS_PER_SECOND = 100;

function processNames(cmdline: string, databases: Record<string, string>): string[] {
  const entry = /(gateway|subgraphs\/(\w+))\/src\/main\.ts/.exec(cmdline);
  if (entry) return [entry[2] ?? "gateway"];
  if (cmdline.includes("nats-server")) return ["nats-server"];
  if (cmdline.includes("redis-server")) return ["redis-server"];
  if (!cmdline.startsWith("postgres:")) return [];
  const service = Object.entries(databases).find(([, db]) => cmdline.includes(` ${db} `))?.[0];
  if (service === undefined) return [];
  return /^\d+$/.test(service) ? ["postgres"] : ["postgres", `pg:${service}`];
}

/**
 * CPU seconds (user + system) per process name, plus "(kernel, all)", summed over processes of the same name. Databases
 * as a list, or by service for PostgreSQL's CPU per service's database as well.
 */
export function processCpuSeconds(databases: string[] | Record<string, string>): Record<string, number> {
  const byService: Record<string, string> = Array.isArray(databases) ? Object.fromEntries(databases.entries()) : databases;
  const seconds: Record<string, number> = {};
  for (const pid of readdirSync("/proc").filter((entry) => /^\d+$/.test(entry))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      const names = processNames(cmdline, byService);
      if (names.length === 0) continue;
      // Fields after the command name, which is in parentheses and may hold spaces.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const [userTicks, systemTicks] = [Number(fields[11]), Number(fields[12])]; // utime, stime
      for (const name of names) seconds[name] = (seconds[name] ?? 0) + (userTicks + systemTicks) / CLOCK_TICKS_PER_SECOND;
      // The kernel's share (system calls: sockets, fsync) of every process, counted once.
      seconds["(kernel, all)"] = (seconds["(kernel, all)"] ?? 0) + systemTicks / CLOCK_TICKS_PER_SECOND;
      const kernel = `kernel:${names[0]}`;
      seconds[kernel] = (seconds[kernel] ?? 0) + systemTicks / CLOCK_TICKS_PER_SECOND;
    } catch {
      // The process ended between listing and reading.
    }
  }
  return seconds;
}

/**
 * Milliseconds of this process's own CPU (user and system) per unit of work since `before`, a
 * `process.cpuUsage()` reading: the benchmark's client, which shares the cores with what it measures.
 */
export function ownCpuPerUnit(before: NodeJS.CpuUsage, units: number): number {
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000 / units;
}

/** Milliseconds of CPU per unit of work between two readings, as "name 12.34" pairs, largest first (/proc counts 10 ms ticks: over thousands of units the second decimal is real). */
export function cpuPerUnit(before: Record<string, number>, after: Record<string, number>, units: number): string {
  return perUnit(before, after, units, (name) => !name.startsWith("kernel:"));
}

/** The kernel's part of cpuPerUnit, process by process: where system calls (sockets, fsync) are made. */
export function kernelPerUnit(before: Record<string, number>, after: Record<string, number>, units: number): string {
  return perUnit(before, after, units, (name) => name.startsWith("kernel:")).replaceAll("kernel:", "");
}

function perUnit(before: Record<string, number>, after: Record<string, number>, units: number, keep: (name: string) => boolean): string {
  return Object.entries(after)
    .filter(([name]) => keep(name))
    .map(([name, s]) => [name, ((s - (before[name] ?? 0)) * 1000) / units] as const)
    .sort((a, b) => b[1] - a[1])
    .map(([name, ms]) => `${name} ${ms.toFixed(2)}`)
    .join(", ");
}
