import { randomUUID } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { SERVICES, deployMigrations, ensureDatabase, withDatabase, type ServiceName } from "@vaultpay/migrate";
import { PortTakenError, freePort, isPortFree, waitForHttp } from "./net.ts";
import { startRoundRobinFront, type RoundRobinFront } from "./front.ts";
import { spawnManaged, type ManagedProcess } from "./process.ts";
import type { Infra } from "./infra.ts";
import { SECRETS_BY_PROCESS, type DevSecrets } from "./secrets.ts";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** Default ports: the gateway on 4000 (shared/API.md), subgraphs after it in SERVICES order. */
export const DEFAULT_GATEWAY_PORT = 4000;

export type ProcessName = ServiceName | "gateway";

export interface ServicesOptions {
  infra: Pick<Infra, "databaseUrl" | "natsUrl" | "redisUrl">;
  /** Keys and shared secrets; each process gets only those it needs (SECRETS_BY_PROCESS). */
  secrets: DevSecrets;
  /** Databases are named `<prefix>_<service>`; tests use a unique prefix per stack. */
  databasePrefix?: string;
  gatewayPort?: number;
  /** Subgraph ports; by default gatewayPort+1… when `fixedPorts`, else free ports. */
  fixedPorts?: boolean;
  nodeEnv?: "development" | "test" | "production";
  logLevel?: string;
  /**
   * Where the gateway reaches a subgraph instead of its own address (tests put a recording proxy
   * in between, to capture what the gateway sends).
   */
  gatewaySubgraphUrls?: Partial<Record<ServiceName, string>>;
  /** Extra environment for every process (e.g. ADMIN_EMAIL). */
  env?: NodeJS.ProcessEnv;
  output?: ((line: string) => void) | null;
  readyTimeoutMs?: number;
  /**
   * Copies of every process (`pnpm start --cluster`: 2). With more than one, each process's usual
   * port is a round-robin front (front.ts) over its replicas, which listen on free ports.
   */
  replicas?: number;
}

export interface Services {
  gatewayUrl: string;
  urls: Record<ProcessName, string>;
  databaseUrls: Record<ServiceName, string>;
  /** The (first) process of each name. */
  processes: Map<ProcessName, ManagedProcess>;
  /** Every replica of each process, with its own URL (behind the front when there are several). */
  replicas: Record<ProcessName, Array<{ url: string; process: ManagedProcess }>>;
  /** Starts a process again (after a kill or stop) with the same settings, and waits until ready. */
  restart(name: ProcessName, replica?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Settings only auth reads that are secrets: the other processes never see them. */
export const AUTH_ONLY_SETTINGS = ["SMTP_PASSWORD", "SMS_SIGNING_SECRET", "ADMIN_PASSWORD"];

function pick(env: NodeJS.ProcessEnv, names: readonly string[]): NodeJS.ProcessEnv {
  const chosen: NodeJS.ProcessEnv = {};
  for (const name of names.flatMap((base) => [base, `${base}_FILE`])) if (env[name] !== undefined) chosen[name] = env[name];
  return chosen;
}

/**
 * The operator's environment minus every secret (and its NAME_FILE): each process gets the keys it
 * needs from SECRETS_BY_PROCESS and auth its own, not all of them through inheritance.
 */
function withoutSecrets(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const hidden = new Set([...Object.values(SECRETS_BY_PROCESS).flat(), ...AUTH_ONLY_SETTINGS].flatMap((base) => [base, `${base}_FILE`]));
  return Object.fromEntries(Object.entries(env).filter(([name]) => !hidden.has(name)));
}

/** The same server with another database name (re-exported for scripts and tests). */
export { withDatabase };

/**
 * Creates and migrates each service's database, starts the five subgraphs, then the gateway, and
 * waits until each answers /readyz. Each process runs `src/main.ts` under tsx.
 */
export async function startServices(options: ServicesOptions): Promise<Services> {
  const prefix = options.databasePrefix ?? "vaultpay";
  const gatewayPort = options.gatewayPort ?? DEFAULT_GATEWAY_PORT;
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const databaseUrls = Object.fromEntries(
    SERVICES.map((service) => [service, withDatabase(options.infra.databaseUrl, `${prefix}_${service}`)]),
  ) as Record<ServiceName, string>;
  await Promise.all(
    SERVICES.map(async (service) => {
      await ensureDatabase(databaseUrls[service]);
      await deployMigrations({ service, databaseUrl: databaseUrls[service] });
    }),
  );

  const replicaCount = options.replicas ?? 1;
  const ports = {} as Record<ProcessName, number>;
  for (const [index, service] of SERVICES.entries()) {
    ports[service] = options.fixedPorts ? gatewayPort + 1 + index : await freePort();
  }
  ports.gateway = gatewayPort;
  const busy = [];
  for (const port of Object.values(ports)) if (!(await isPortFree(port))) busy.push(port);
  if (busy.length > 0) {
    throw new Error(`port(s) ${busy.join(", ")} already in use — is another VaultPay stack running? (GATEWAY_PORT moves them all)`);
  }
  const urlOf = (port: number) => `http://127.0.0.1:${port}/graphql`;
  const urls = Object.fromEntries(Object.entries(ports).map(([name, port]) => [name, urlOf(port)])) as Record<ProcessName, string>;
  // Where each replica listens: the process's own port when it runs alone, free ports behind a front otherwise.
  const replicaPorts = {} as Record<ProcessName, number[]>;
  for (const name of [...SERVICES, "gateway"] as ProcessName[]) {
    replicaPorts[name] = replicaCount === 1 ? [ports[name]] : await Promise.all(Array.from({ length: replicaCount }, () => freePort()));
  }

  const common: NodeJS.ProcessEnv = {
    ...withoutSecrets(process.env),
    NODE_ENV: options.nodeEnv ?? "development",
    LOG_LEVEL: options.logLevel ?? "info",
    NATS_URL: options.infra.natsUrl,
    REDIS_URL: options.infra.redisUrl,
    VAULTPAY_SUPERVISED: "true",
    ...options.env,
  };
  const authOrigin = new URL(urls.auth).origin;
  const envFor = (name: ProcessName): NodeJS.ProcessEnv => {
    const secrets = Object.fromEntries((SECRETS_BY_PROCESS[name] ?? []).map((key) => [key, options.secrets[key]]));
    const own = name === "auth" ? pick(process.env, AUTH_ONLY_SETTINGS) : {};
    const shared = { ...common, ...own, ...secrets, AUTH_JWKS_URL: `${authOrigin}/.well-known/jwks.json` };
    return name === "gateway"
      ? {
          ...shared,
          ...Object.fromEntries(
            SERVICES.map((service) => [`${service.toUpperCase()}_URL`, options.gatewaySubgraphUrls?.[service] ?? urls[service]]),
          ),
        }
      : { ...shared, DATABASE_URL: databaseUrls[name] };
  };

  const processes = new Map<ProcessName, ManagedProcess>();
  const replicas = Object.fromEntries(
    [...SERVICES, "gateway"].map((name) => [name, [] as Array<{ url: string; process: ManagedProcess }>]),
  ) as Services["replicas"];
  const start = async (name: ProcessName, replica: number) => {
    const entry = name === "gateway" ? "gateway/src/main.ts" : `subgraphs/${name}/src/main.ts`;
    const instance = randomUUID();
    const port = replicaPorts[name][replica]!;
    const managed = spawnManaged({
      name: replicaCount === 1 ? name : `${name}-${replica + 1}`,
      command: process.execPath,
      args: ["--import", "tsx", entry],
      cwd: REPO_ROOT,
      env: { ...envFor(name), [name === "gateway" ? "GATEWAY_PORT" : "PORT"]: String(port), VAULTPAY_INSTANCE_ID: instance },
      output: options.output,
    });
    if (replica === 0) processes.set(name, managed);
    replicas[name][replica] = { url: urlOf(port), process: managed };
    await waitForHttp(`http://127.0.0.1:${port}/readyz`, readyTimeoutMs, managed.alive, instance);
  };
  /**
   * Starts a process on its port. A port chosen free can be taken before the process binds it
   * (another stack starting at the same moment, tests run in parallel): when someone else answers
   * there, or holds it after ours exited, the process moves to another free port (unless the ports
   * are fixed). The gateway starts last, so it learns the subgraphs' final addresses.
   */
  const launch = async (name: ProcessName, replica = 0, attempts = options.fixedPorts && replicaCount === 1 ? 1 : 3) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await start(name, replica);
      } catch (error) {
        const taken = error instanceof PortTakenError || !(await isPortFree(replicaPorts[name][replica]!));
        if (!taken || attempt >= attempts) throw error;
        await replicas[name][replica]?.process.kill();
        const moved = await freePort();
        replicaPorts[name][replica] = moved;
        if (replicaCount === 1) {
          ports[name] = moved;
          urls[name] = urlOf(moved);
        }
        options.output?.(`[stack] ${name}: port taken by another process; moving to ${moved}`);
      }
    }
  };
  const fronts: RoundRobinFront[] = [];

  const stop = async () => {
    // Gateway first so no new work arrives, then the subgraphs drain their consumers.
    await Promise.all(fronts.map((front) => front.close()));
    await Promise.all(replicas.gateway.map(({ process }) => process.stop()));
    await Promise.all(SERVICES.flatMap((service) => replicas[service].map(({ process }) => process.stop())));
  };
  try {
    if (replicaCount > 1) {
      // The fronts first: the gateway and the JWKS URL name the processes' usual ports.
      for (const name of [...SERVICES, "gateway"] as ProcessName[]) {
        fronts.push(await startRoundRobinFront({ port: ports[name], backends: () => replicaPorts[name] }));
      }
    }
    // One replica of each first, the others once it is up: start-up work (auth's administrator)
    // runs once rather than racing its twin.
    for (let replica = 0; replica < replicaCount; replica++) {
      await Promise.all(SERVICES.map((service) => launch(service, replica)));
    }
    for (let replica = 0; replica < replicaCount; replica++) await launch("gateway", replica);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    gatewayUrl: urls.gateway,
    urls,
    databaseUrls,
    processes,
    replicas,
    restart: async (name, replica = 0) => {
      await replicas[name][replica]?.process.kill();
      // Same port: the gateway knows the subgraphs by address.
      await launch(name, replica, 1);
    },
    stop,
  };
}
