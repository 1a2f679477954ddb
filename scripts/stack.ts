/**
 * `pnpm start`: the whole platform on this machine. Embedded PostgreSQL unless DATABASE_URL is set,
 * nats-server and redis-server from PATH unless NATS_URL / REDIS_URL are set, then migrations, the
 * five subgraphs and the gateway. Data stays under .data/ (VAULTPAY_DATA_DIR) between runs.
 * Ctrl-C stops everything.
 */
import path from "node:path";
import { z } from "zod";
import { loadConfig, portSchema } from "@vaultpay/kit";
import { DEFAULT_GATEWAY_PORT, REPO_ROOT, startInfra, startServices, type Infra, type Services } from "@vaultpay/stack";

const config = loadConfig(
  z.object({
    NODE_ENV: z.enum(["development", "test", "production"]).default("development"),
    LOG_LEVEL: z.string().default("info"),
    DATABASE_URL: z.string().url().optional(),
    NATS_URL: z.string().url().optional(),
    REDIS_URL: z.string().url().optional(),
    GATEWAY_PORT: portSchema.default(DEFAULT_GATEWAY_PORT),
    VAULTPAY_DATA_DIR: z.string().default(path.join(REPO_ROOT, ".data")),
  }),
);

const say = (line: string) => process.stdout.write(`[stack] ${line}\n`);
let infra: Infra | undefined;
let services: Services | undefined;
let stopping = false;

async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say("stopping…");
    await services?.stop();
    await infra?.stop();
    say("stopped");
  }
  process.exit(code);
}
process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

try {
  const startedAt = Date.now();
  infra = await startInfra({
    dataDir: path.resolve(config.VAULTPAY_DATA_DIR),
    persistent: true,
    databaseUrl: config.DATABASE_URL,
    natsUrl: config.NATS_URL,
    redisUrl: config.REDIS_URL,
  });
  say(`postgres ${config.DATABASE_URL ? "(given)" : "(embedded)"} ${new URL(infra.databaseUrl).host}`);
  say(`nats ${config.NATS_URL ? "(given)" : "(nats-server -js)"} ${infra.natsUrl}`);
  say(`redis ${config.REDIS_URL ? "(given)" : "(redis-server)"} ${infra.redisUrl}`);
  services = await startServices({
    infra,
    gatewayPort: config.GATEWAY_PORT,
    fixedPorts: true,
    nodeEnv: config.NODE_ENV,
    logLevel: config.LOG_LEVEL,
  });
  for (const process of services.processes.values()) {
    void process.exited.then((code) => {
      if (!stopping) say(`${process.name} exited (${code}); stopping the stack`) ;
      if (!stopping) void stop(1);
    });
  }
  say(`ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  say(
    config.NODE_ENV === "production"
      ? `gateway: ${services.gatewayUrl}`
      : `gateway and Apollo Sandbox: ${services.gatewayUrl}  (Ctrl-C stops everything)`,
  );
} catch (error) {
  process.stderr.write(`[stack] ${error instanceof Error ? error.message : String(error)}\n`);
  await stop(1);
}
