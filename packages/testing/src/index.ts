import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes, randomUUID as randomUUIDv4 } from "node:crypto";
import type { JWK } from "jose";
import { Agent, request } from "undici";
import { deployMigrations, dropDatabase, ensureDatabase, type ServiceName } from "@vaultpay/migrate";

export { dropDatabase };
export * from "./notifications.ts";
export * from "./prometheus.ts";
import {
  freePort,
  generateDevSecrets,
  runningPostmasterPid,
  startNats,
  startNatsCluster,
  startPostgres,
  startRedis,
  startServices,
  testDataDir,
  withDatabase,
  type DevSecrets,
  type ManagedNats,
  type ManagedNatsCluster,
  type ManagedRedis,
  type Services,
  type ServicesOptions,
} from "@vaultpay/stack";

/**
 * Keep-alive connections for the tests' and benchmarks' requests (to gateways; the gateway
 * benchmark's also straight to a subgraph): undici's `request` without the WHATWG fetch layer.
 * The saga benchmark's sender, which shares the two cores with the stack, took 1.1–1.3 ms of CPU
 * per transfer through fetch and 0.7 through this (bench/saga-results.md, 2026-12-06).
 */
const keepAlive = new Agent({ keepAliveTimeout: 10_000 });

/** undici's raw response headers as the WHATWG Headers tests read (`get`, case-insensitive). */
function asHeaders(raw: Record<string, string | string[] | undefined>): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw)) {
    for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, one);
  }
  return headers;
}

/**
 * POSTs a JSON body over the shared keep-alive connections and parses the JSON answer. The body is
 * passed serialized: a caller that signs it (a gateway assertion) sends exactly the signed bytes.
 */
export async function postJson<T>(
  url: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T; headers: Headers }> {
  const response = await request(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
    dispatcher: keepAlive,
  });
  return { status: response.statusCode, body: (await response.body.json()) as T, headers: asHeaders(response.headers) };
}

/** The PostgreSQL server the global setup started (or TEST_DATABASE_URL). */
export function testServerUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error("DATABASE_URL is not set: run tests through vitest (its global setup starts PostgreSQL)");
  return url;
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString("hex")}`;
}

/** A fresh, migrated database of one service's schema; dropped by `drop()`. */
export async function createTestDatabase(service: ServiceName): Promise<{ url: string; drop: () => Promise<void> }> {
  const url = withDatabase(testServerUrl(), uniqueName(`t_${service}`));
  await ensureDatabase(url);
  await deployMigrations({ service, databaseUrl: url });
  return { url, drop: () => dropDatabase(url) };
}

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `vaultpay-${prefix}-`));
}

/** A private 3-node JetStream cluster on free ports; each node's `restart()` brings it back after a kill. */
export async function startTestNatsCluster(): Promise<ManagedNatsCluster> {
  const dir = tempDir("nats-cluster");
  const cluster = await startNatsCluster(dir, { output: null });
  return {
    ...cluster,
    stop: async () => {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A private nats-server with JetStream on a free port; `restart()` brings it back after a kill. */
export async function startTestNats(): Promise<ManagedNats & { stop: () => Promise<void> }> {
  const dir = tempDir("nats");
  const nats = await startNats(dir, await freePort(), null);
  return Object.assign(nats, {
    stop: async () => {
      await nats.process.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

export async function startTestRedis(): Promise<ManagedRedis & { stop: () => Promise<void> }> {
  const dir = tempDir("redis");
  const redis = await startRedis(dir, false, await freePort(), null);
  return Object.assign(redis, {
    stop: async () => {
      await redis.process.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** How a test stops PostgreSQL under a running stack. */
export type PostgresFault =
  /** SIGINT: fast shutdown — sessions are cut, committed work is flushed. */
  | "fast"
  /** SIGKILL to the postmaster and every backend: a crash; restart replays the WAL. */
  | "kill";

export interface TestPostgres {
  /** Superuser URL (database `postgres`), for `startTestStack({ databaseServerUrl })`. */
  url: string;
  fault(kind: PostgresFault): Promise<void>;
  /** Starts the server again on the same data and port after a fault. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A PostgreSQL server of a test's own (embedded, like the stack's, with the same settings), for
 * tests that stop or crash it: the suite's shared server must stay up for the other files.
 */
export async function startTestPostgres(): Promise<TestPostgres> {
  const dir = testDataDir("pg-");
  const pg = await startPostgres(dir, true, await freePort());
  const processesOf = (pid: number) => {
    const children = spawnSync("pgrep", ["-P", String(pid)], { encoding: "utf8" })
      .stdout.split("\n")
      .filter(Boolean)
      .map(Number);
    return [pid, ...children];
  };
  const gone = async (pids: number[]) => {
    for (let waited = 0; pids.some((pid) => existsSync(`/proc/${pid}`)); waited += 50) {
      if (waited > 30_000) throw new Error(`PostgreSQL processes ${pids.join(", ")} did not exit`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  return {
    url: pg.url,
    async fault(kind) {
      const pid = runningPostmasterPid(pg.databaseDir);
      if (pid === undefined) throw new Error("PostgreSQL is not running");
      const pids = processesOf(pid);
      for (const victim of kind === "kill" ? pids : [pid]) process.kill(victim, kind === "kill" ? "SIGKILL" : "SIGINT");
      await gone(pids);
    },
    restart: () => pg.start(),
    async stop() {
      await pg.postgres.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The last lines the processes of running test stacks wrote (warnings and errors at the test log
 * level), so a failing test can show why — see test/setup.ts.
 */
const RECENT_LINES_KEPT = 400;
export const recentStackLines: string[] = [];
function keepLine(line: string): void {
  recentStackLines.push(line);
  if (recentStackLines.length > RECENT_LINES_KEPT) recentStackLines.splice(0, recentStackLines.length - RECENT_LINES_KEPT);
}

export interface TestStack extends Services {
  /** The one nats-server; with `cluster`, its first node (and `url` names every node). */
  nats: ManagedNats;
  /** With `cluster`: the 3-node JetStream cluster the stack runs on. */
  natsCluster?: ManagedNatsCluster;
  redis: ManagedRedis;
  /** The keys this stack runs with, so tests can mint (or forge) tokens. */
  secrets: DevSecrets;
  redisUrl: string;
  /** Posts an operation to the gateway and returns the parsed JSON body. */
  graphql<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
    headers?: Record<string, string>,
  ): Promise<{ data?: T; errors?: Array<{ message: string; extensions?: Record<string, unknown> }>; headers: Headers }>;
}

/**
 * The whole platform for an end-to-end test file: its own NATS and Redis, its own databases on the
 * shared PostgreSQL server, the five subgraphs and the gateway on free ports. Output is kept quiet
 * unless VAULTPAY_TEST_LOGS=1.
 */
export async function startTestStack(
  options: Partial<ServicesOptions> & {
    /** A PostgreSQL server of the test's own (startTestPostgres). */
    databaseServerUrl?: string;
    /** `pnpm start --cluster`: a 3-node JetStream cluster with R3 streams, two replicas of every process. */
    cluster?: boolean;
  } = {},
): Promise<TestStack & { teardown: () => Promise<void> }> {
  const { databaseServerUrl = testServerUrl(), cluster: clustered = false, ...serviceOptions } = options;
  const [nats, redis] = await Promise.all([clustered ? startTestNatsCluster() : startTestNats(), startTestRedis()]);
  if (clustered) {
    serviceOptions.replicas ??= 2;
    serviceOptions.env = { NATS_STREAM_REPLICAS: "3", ...serviceOptions.env };
  }
  const databasePrefix = uniqueName("e2e");
  const secrets = options.secrets ?? generateDevSecrets();
  let services: Services;
  try {
    services = await startServices({
      infra: { databaseUrl: databaseServerUrl, natsUrl: nats.url, natsUrlFor: nats.urlFor, redisUrl: redis.url },
      databasePrefix,
      gatewayPort: await freePort(),
      nodeEnv: "test",
      logLevel: process.env.VAULTPAY_TEST_LOGS ? "debug" : "warn",
      output: process.env.VAULTPAY_TEST_LOGS ? undefined : keepLine,
      ...serviceOptions,
      secrets,
    });
  } catch (error) {
    await Promise.all([nats.stop(), redis.stop()]);
    throw error;
  }
  return {
    ...services,
    nats: "nodes" in nats ? firstNode(nats) : nats,
    ...("nodes" in nats ? { natsCluster: nats } : {}),
    redis,
    secrets,
    redisUrl: redis.url,
    async graphql(query, variables, headers = {}) {
      const response = await postJson<{ data?: never; errors?: never }>(services.gatewayUrl, JSON.stringify({ query, variables }), headers);
      return { ...response.body, headers: response.headers };
    },
    async teardown() {
      await services.stop();
      await Promise.all([nats.stop(), redis.stop()]);
      await Promise.all(Object.values(services.databaseUrls).map(dropDatabase));
    },
  };
}

/** A cluster seen as one server: every node's URL, the first node's process (live across restarts). */
function firstNode(cluster: ManagedNatsCluster): ManagedNats {
  const node = cluster.nodes[0]!;
  return {
    url: cluster.url,
    urlFor: cluster.urlFor,
    get process() {
      return node.process;
    },
    restart: () => node.restart(),
  };
}

/** Polls `probe` until it returns something truthy, or fails naming what never happened. */
export async function waitUntil<T>(
  probe: () => Promise<T | undefined | null | false>,
  what: string,
  timeoutMs = 30_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

export interface TokenClaims {
  userId: string;
  role: "CUSTOMER" | "ADMIN";
  sessionId?: string;
  deviceId?: string;
  /** Seconds from now; negative for an already expired token. */
  expiresInSeconds?: number;
  /** Binds the token to a DPoP key (`cnf.jkt`, as auth does for a device that signed in with one). */
  boundDeviceKey?: string;
}

/**
 * Signs an access token the way auth does, with the stack's key (or any other JWK, to forge one).
 * For tests of the verifying side; real clients get tokens from verifyOtp.
 */
export async function mintAccessToken(privateJwk: string, claims: TokenClaims): Promise<string> {
  const { SignJWT, importJWK } = await import("jose");
  const jwk = JSON.parse(privateJwk) as JWK & { kid?: string };
  const key = await importJWK(jwk, "ES256");
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    role: claims.role,
    sid: claims.sessionId ?? randomUUIDv4(),
    did: claims.deviceId ?? "test-device",
    ...(claims.boundDeviceKey ? { cnf: { jkt: claims.boundDeviceKey } } : {}),
  })
    .setProtectedHeader({ alg: "ES256", kid: jwk.kid })
    .setSubject(claims.userId)
    .setIssuer("vaultpay-auth")
    .setAudience("vaultpay")
    .setJti(randomUUIDv4())
    .setIssuedAt(now)
    .setExpirationTime(now + (claims.expiresInSeconds ?? 900))
    .sign(key);
}

/**
 * Fraud settings for stacks whose tests are about money movement, not fraud: every rule off except
 * high amount, which fails transfers strictly over `failOverMinor` (omit it to let all pass).
 * Minted tokens carry devices auth never registered, which the device rules would otherwise score.
 */
export function fraudOnlyOnAmount(failOverMinor?: bigint): Record<string, string> {
  return {
    FRAUD_HIGH_AMOUNT_WEIGHT: failOverMinor === undefined ? "0" : "100",
    FRAUD_HIGH_AMOUNT_MINOR: String(failOverMinor ?? 10_000_000n),
    FRAUD_UNKNOWN_DEVICE_WEIGHT: "0",
    FRAUD_DEVICE_MISMATCH_WEIGHT: "0",
    FRAUD_UNPROVEN_DEVICE_WEIGHT: "0",
    FRAUD_NEW_PAYEE_WEIGHT: "0",
    FRAUD_VELOCITY_WEIGHT: "0",
    FRAUD_UNUSUAL_AMOUNT_WEIGHT: "0",
    FRAUD_DAILY_LIMIT_WEIGHT: "0",
  };
}
export * from "./otlp.ts";
