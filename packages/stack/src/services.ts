import { randomUUID } from "node:crypto";
import os from "node:os";
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
  infra: Pick<Infra, "databaseUrl" | "natsUrl" | "redisUrl" | "natsUrlFor">;
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
 * A process's entry point, run as `node <entry>` with no loader (here, in the image and the
 * manifests): Node 24 strips the types itself, and the code is erasable TypeScript (tsconfig's
 * erasableSyntaxOnly, checked by `pnpm typecheck`). Under tsx each process spent ~0.4 s more CPU at
 * start in its loader hooks (bench/saga-results.md, 2026-12-07).
 */
export function processEntry(name: ProcessName): string {
  return name === "gateway" ? "gateway/src/main.ts" : `subgraphs/${name}/src/main.ts`;
}

/**
 * Where the processes keep V8's compiled code between starts (NODE_COMPILE_CACHE; a quiet cache: a
 * miss or a stale entry only costs the compile). The operator's own NODE_COMPILE_CACHE, or
 * NODE_DISABLE_COMPILE_CACHE, wins.
 */
const COMPILE_CACHE_DIR = path.join(os.tmpdir(), "vaultpay-node-compile-cache");

/** Every process, subgraphs first in SERVICES order, the gateway last. */
export const PROCESS_NAMES: readonly ProcessName[] = [...SERVICES, "gateway"];

/**
 * Creates and migrates each service's database, starts the five subgraphs, then the gateway, and
 * waits until each answers /readyz. Each process runs its `src/main.ts` on Node's own type stripping
 * (processEntry).
 */
export async function startServices(options: ServicesOptions): Promise<Services> {
  const databaseUrls = await prepareDatabases(options.infra.databaseUrl, options.databasePrefix ?? "vaultpay");
  const replicaCount = options.replicas ?? 1;
  const plan = await planPorts(options.gatewayPort ?? DEFAULT_GATEWAY_PORT, options.fixedPorts === true, replicaCount);
  const stack = new StackProcesses(options, plan, environmentFor(options, plan.urls, databaseUrls), replicaCount);
  try {
    await stack.startAll();
  } catch (error) {
    await stack.stop();
    throw error;
  }
  return {
    // Read after the start: a process whose chosen port was taken moved to another one.
    gatewayUrl: plan.urls.gateway,
    urls: plan.urls,
    databaseUrls,
    processes: stack.processes,
    replicas: stack.replicas,
    restart: (name, replica = 0) => stack.restart(name, replica),
    stop: () => stack.stop(),
  };
}

/** Creates each service's database `<prefix>_<service>` when missing and applies its pending migrations, all at once. */
async function prepareDatabases(serverUrl: string, prefix: string): Promise<Record<ServiceName, string>> {
  const databaseUrls = Object.fromEntries(SERVICES.map((service) => [service, withDatabase(serverUrl, `${prefix}_${service}`)])) as Record<
    ServiceName,
    string
  >;
  await Promise.all(
    SERVICES.map(async (service) => {
      await ensureDatabase(databaseUrls[service]);
      await deployMigrations({ service, databaseUrl: databaseUrls[service] });
    }),
  );
  return databaseUrls;
}

/**
 * Where every process listens. `ports` are the processes' usual ports, the ones the others are told
 * (`urls`); `replicaPorts` are where the replicas really listen: the usual port itself when a process
 * runs alone, free ports behind a round-robin front on the usual port otherwise.
 */
interface PortPlan {
  ports: Record<ProcessName, number>;
  replicaPorts: Record<ProcessName, number[]>;
  urls: Record<ProcessName, string>;
}

function graphqlUrl(port: number): string {
  return `http://127.0.0.1:${port}/graphql`;
}

/**
 * Chooses the ports: the gateway's, the subgraphs' after it when fixed or free ones otherwise, and
 * refuses at once, naming them, the ones already in use (most likely another stack).
 */
async function planPorts(gatewayPort: number, fixedPorts: boolean, replicaCount: number): Promise<PortPlan> {
  const ports = {} as Record<ProcessName, number>;
  for (const [index, service] of SERVICES.entries()) {
    ports[service] = fixedPorts ? gatewayPort + 1 + index : await freePort();
  }
  ports.gateway = gatewayPort;
  const busy = [];
  for (const port of Object.values(ports)) if (!(await isPortFree(port))) busy.push(port);
  if (busy.length > 0) {
    throw new Error(`port(s) ${busy.join(", ")} already in use — is another VaultPay stack running? (GATEWAY_PORT moves them all)`);
  }
  const urls = Object.fromEntries(Object.entries(ports).map(([name, port]) => [name, graphqlUrl(port)])) as Record<ProcessName, string>;
  const replicaPorts = {} as Record<ProcessName, number[]>;
  for (const name of PROCESS_NAMES) {
    replicaPorts[name] = replicaCount === 1 ? [ports[name]] : await Promise.all(Array.from({ length: replicaCount }, () => freePort()));
  }
  return { ports, replicaPorts, urls };
}

/**
 * What each process is told: the operator's environment without its secrets, the infrastructure,
 * the secrets this process needs (auth also its own settings), and a subgraph its database or the
 * gateway the subgraphs' URLs. Read when a process starts, so the gateway, started last, is told
 * the subgraphs' final addresses.
 */
function environmentFor(
  options: ServicesOptions,
  urls: Record<ProcessName, string>,
  databaseUrls: Record<ServiceName, string>,
): (name: ProcessName) => NodeJS.ProcessEnv {
  const common: NodeJS.ProcessEnv = {
    NODE_COMPILE_CACHE: COMPILE_CACHE_DIR,
    ...withoutSecrets(process.env),
    NODE_ENV: options.nodeEnv ?? "development",
    LOG_LEVEL: options.logLevel ?? "info",
    REDIS_URL: options.infra.redisUrl,
    VAULTPAY_SUPERVISED: "true",
    ...options.env,
  };
  return (name) => {
    const secrets = Object.fromEntries((SECRETS_BY_PROCESS[name] ?? []).map((key) => [key, options.secrets[key]]));
    const own = name === "auth" ? pick(process.env, AUTH_ONLY_SETTINGS) : {};
    const shared = {
      ...common,
      ...own,
      ...secrets,
      // The stack's own NATS: each process as its own user, allowed to publish only its own events.
      NATS_URL: options.infra.natsUrlFor?.(name) ?? options.infra.natsUrl,
      AUTH_JWKS_URL: `${new URL(urls.auth).origin}/.well-known/jwks.json`,
    };
    if (name !== "gateway") return { ...shared, DATABASE_URL: databaseUrls[name] };
    const subgraphUrls = SERVICES.map((service) => [
      `${service.toUpperCase()}_URL`,
      options.gatewaySubgraphUrls?.[service] ?? urls[service],
    ]);
    return { ...shared, ...Object.fromEntries(subgraphUrls) };
  };
}

/** The stack's running processes: starting each replica, moving it when its port was taken, the fronts, the ordered stop. */
class StackProcesses {
  /** The first replica of each process. */
  readonly processes = new Map<ProcessName, ManagedProcess>();
  readonly replicas = Object.fromEntries(
    PROCESS_NAMES.map((name) => [name, [] as Services["replicas"][ProcessName]]),
  ) as Services["replicas"];
  private readonly fronts: RoundRobinFront[] = [];

  private readonly options: ServicesOptions;
  private readonly plan: PortPlan;
  private readonly envFor: (name: ProcessName) => NodeJS.ProcessEnv;
  private readonly replicaCount: number;

  constructor(options: ServicesOptions, plan: PortPlan, envFor: (name: ProcessName) => NodeJS.ProcessEnv, replicaCount: number) {
    this.options = options;
    this.plan = plan;
    this.envFor = envFor;
    this.replicaCount = replicaCount;
  }

  async startAll(): Promise<void> {
    if (this.replicaCount > 1) {
      // The fronts first: the gateway and the JWKS URL name the processes' usual ports.
      for (const name of PROCESS_NAMES) {
        this.fronts.push(await startRoundRobinFront({ port: this.plan.ports[name], backends: () => this.plan.replicaPorts[name] }));
      }
    }
    // One replica of each first, the others once it is up: start-up work (auth's administrator)
    // runs once rather than racing its twin.
    for (let replica = 0; replica < this.replicaCount; replica++) {
      await Promise.all(SERVICES.map((service) => this.launch(service, replica)));
    }
    for (let replica = 0; replica < this.replicaCount; replica++) await this.launch("gateway", replica);
  }

  async restart(name: ProcessName, replica: number): Promise<void> {
    await this.replicas[name][replica]?.process.kill();
    // Same port: the gateway knows the subgraphs by address.
    await this.launch(name, replica, 1);
  }

  async stop(): Promise<void> {
    // Gateway first so no new work arrives, then the subgraphs drain their consumers.
    await Promise.all(this.fronts.map((front) => front.close()));
    await Promise.all(this.replicas.gateway.map(({ process }) => process.stop()));
    await Promise.all(SERVICES.flatMap((service) => this.replicas[service].map(({ process }) => process.stop())));
  }

  /**
   * Starts a process on its port. A port chosen free can be taken before the process binds it
   * (another stack starting at the same moment, tests run in parallel): when someone else answers
   * there, or holds it after ours exited, the process moves to another free port (unless the ports
   * are fixed). The gateway starts last, so it learns the subgraphs' final addresses.
   */
  private async launch(name: ProcessName, replica: number, attempts = this.options.fixedPorts && this.replicaCount === 1 ? 1 : 3) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.spawn(name, replica);
      } catch (error) {
        const taken = error instanceof PortTakenError || !(await isPortFree(this.plan.replicaPorts[name][replica]!));
        if (!taken || attempt >= attempts) throw error;
        await this.replicas[name][replica]?.process.kill();
        this.moveReplica(name, replica, await freePort());
      }
    }
  }

  /** Gives a replica another port; a process that runs alone is then known at that port too. */
  private moveReplica(name: ProcessName, replica: number, port: number): void {
    this.plan.replicaPorts[name][replica] = port;
    if (this.replicaCount === 1) {
      this.plan.ports[name] = port;
      this.plan.urls[name] = graphqlUrl(port);
    }
    this.options.output?.(`[stack] ${name}: port taken by another process; moving to ${port}`);
  }

  /** Spawns one replica (processEntry) and waits until this very instance answers /readyz. */
  private async spawn(name: ProcessName, replica: number): Promise<void> {
    const instance = randomUUID();
    const port = this.plan.replicaPorts[name][replica]!;
    const managed = spawnManaged({
      name: this.replicaCount === 1 ? name : `${name}-${replica + 1}`,
      command: process.execPath,
      args: [processEntry(name)],
      cwd: REPO_ROOT,
      env: { ...this.envFor(name), [name === "gateway" ? "GATEWAY_PORT" : "PORT"]: String(port), VAULTPAY_INSTANCE_ID: instance },
      output: this.options.output,
    });
    if (replica === 0) this.processes.set(name, managed);
    this.replicas[name][replica] = { url: graphqlUrl(port), process: managed };
    await waitForHttp(`http://127.0.0.1:${port}/readyz`, this.options.readyTimeoutMs ?? 60_000, managed.alive, instance);
  }
}
