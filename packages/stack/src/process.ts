import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import path from "node:path";
import readline from "node:readline";

/** Finds an executable on PATH; a missing one stops with one line saying how to get it. */
export function requireBinary(name: string, installHint: string): string {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  throw new Error(`${name} not found on PATH: ${installHint}`);
}

const COLORS = [36, 35, 33, 32, 34, 91, 96, 95];
let nextColor = 0;

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
const OMITTED = new Set(["level", "time", "msg", "service", "pid", "hostname"]);

/** Turns a pino JSON line into `HH:MM:SS LEVEL message key=value`; other lines pass through. */
export function readableLogLine(line: string): string {
  if (!line.startsWith("{")) return line;
  try {
    const record = JSON.parse(line) as Record<string, unknown>;
    const time = typeof record.time === "string" ? record.time.slice(11, 19) : "";
    const level = LEVELS[Number(record.level)] ?? String(record.level ?? "");
    const rest = Object.entries(record)
      .filter(([key]) => !OMITTED.has(key))
      .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
      .join(" ");
    return `${time} ${level.padEnd(5)} ${String(record.msg ?? "")}${rest ? ` ${rest}` : ""}`;
  } catch {
    return line;
  }
}

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  /** Resolves with the exit code (or signal) when the process ends. */
  exited: Promise<number | string>;
  alive(): boolean;
  /** SIGTERM, then SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void>;
  kill(): Promise<void>;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Where prefixed lines go; defaults to this process's stdout. Null drops them. */
  output?: ((line: string) => void) | null;
  readable?: boolean;
}

/** Spawns a child whose output lines are prefixed with its name, one colour per process. */
export function spawnManaged(options: SpawnOptions): ManagedProcess {
  const color = COLORS[nextColor++ % COLORS.length];
  const prefix = process.stdout.isTTY ? `\x1b[${color}m[${options.name}]\x1b[0m ` : `[${options.name}] `;
  const child = spawn(options.command, options.args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: Ctrl-C in a terminal reaches only the stack, which then stops each
    // process in order (services drain before NATS and PostgreSQL go away).
    detached: true,
  });
  const output = options.output === undefined ? (line: string) => process.stdout.write(`${line}\n`) : options.output;
  for (const stream of [child.stdout, child.stderr]) {
    const lines = readline.createInterface({ input: stream! });
    lines.on("line", (line) => output?.(prefix + (options.readable === false ? line : readableLogLine(line))));
  }
  let running = true;
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      running = false;
      resolve(code ?? signal ?? "unknown");
    });
    child.once("error", (error) => {
      running = false;
      output?.(`${prefix}failed to start: ${error.message}`);
      resolve("error");
    });
  });
  const managed: ManagedProcess = {
    name: options.name,
    child,
    exited,
    alive: () => running,
    async stop(graceMs = 10_000) {
      if (!running) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
    async kill() {
      if (!running) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
  return managed;
}
