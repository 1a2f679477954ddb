import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import { z } from "zod";
import type { GraphQLResolverMap } from "@apollo/subgraph";
import {
  Lifecycle,
  baseConfigSchema,
  createLogger,
  loadConfig,
  portSchema,
  startSubgraph,
  createTokenVerifier,
  introspectionEnabled,
  createMetrics,
  type Metrics,
  sessionRevocationsIn,
  assertionNonceKey,
  ASSERTION_NONCE_TTL_SECONDS,
  startProcessTracing,
  type Caller,
  type Logger,
  type RequestContext,
} from "@vaultpay/kit";
import { STREAMS, startEventing, streamLimitsOf, type Eventing, type SqlDatabase, type SqlExecutor } from "@vaultpay/events";
import { SqlPool, type SqlTransaction } from "./sql.ts";

export { prismaClientOptions } from "./db.ts";
export { SqlPool, SqlTransaction } from "./sql.ts";

/**
 * The service's database URL with every commit made durable before it is acknowledged, whatever
 * the server's default: a service publishes an outbox row or acks a consumed event only after its
 * commit, so a commit a crash could still undo (synchronous_commit=off) would leave money debited
 * for a transfer that no longer exists, or an audit record lost for good (issue 15).
 */
export function withDurableCommits(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  const given = url.searchParams.get("options");
  url.searchParams.set("options", [given, "-c synchronous_commit=on"].filter(Boolean).join(" "));
  return url.toString();
}

/**
 * What the session's commits promise, read back from the server. fsync=off is a server setting no
 * session can override: production refuses to run on it; elsewhere it is a loud warning.
 */
export async function checkDurability(db: Pick<SqlExecutor, "$queryRawUnsafe">, production: boolean, logger: Logger): Promise<void> {
  const [row] = (await db.$queryRawUnsafe(
    "SELECT current_setting('synchronous_commit') AS synchronous_commit, current_setting('fsync') AS fsync",
  )) as Array<{ synchronous_commit: string; fsync: string }>;
  const problems = [row?.synchronous_commit === "off" ? "synchronous_commit=off" : null, row?.fsync === "off" ? "fsync=off" : null].filter(
    (problem) => problem !== null,
  );
  if (problems.length === 0) return;
  const message = `the database runs with ${problems.join(" and ")}: a crash would undo commits whose events were already published`;
  if (production) throw new Error(`DATABASE_URL: ${message}`);
  logger.warn(message);
}

export const subgraphConfigSchema = baseConfigSchema.extend({
  PORT: portSchema,
  /** Subgraphs listen only where the gateway reaches them. */
  HOST: z.string().default("127.0.0.1"),
  DATABASE_URL: z.string().url(),
  /** Shared with the gateway only: proves a request came through it (kit/auth.ts). */
  GATEWAY_SECRET: z.string().min(32, "GATEWAY_SECRET must be at least 32 characters"),
  /** Auth's public keys, to verify access tokens here too. */
  AUTH_JWKS_URL: z.string().url(),
  /** Where auth marks revoked sessions; checked here too (zero trust). */
  REDIS_URL: z.string().url(),
});

export type SubgraphConfig = z.infer<typeof subgraphConfigSchema>;

/** What a subgraph's wiring receives to build its resolvers, consumers and context. */
export interface ServiceRuntime<Db extends SqlDatabase<Tx>, Tx extends SqlExecutor, Config extends SubgraphConfig> {
  config: Config;
  logger: Logger;
  lifecycle: Lifecycle;
  db: Db;
  /**
   * The same database for raw SQL on node-postgres (sql.ts): the outbox relay and every event
   * consumer run their transactions here; so can a hot path that issues only raw statements.
   */
  sql: SqlPool;
  eventing: Eventing<SqlTransaction>;
  /** Prometheus metrics served at /metrics; services add their own gauges. */
  metrics: Metrics;
}

/**
 * A subgraph's parts. No caller names the type parameters: they are inferred from the parts, the
 * client and its transaction type from `createDb`, the configuration from `configSchema` (the common
 * one without it), the resolvers' context from `context`.
 */
export interface SubgraphService<Db extends SqlDatabase<Tx>, Tx extends SqlExecutor, Config extends SubgraphConfig, C extends object> {
  name: string;
  /** URL of the subgraph's schema.graphql (e.g. `new URL("./schema.graphql", import.meta.url)`). */
  schemaUrl: URL;
  /** Extends the common configuration with the service's own settings. */
  configSchema?: z.ZodType<Config>;
  /** Creates the Prisma client for DATABASE_URL (its `$transaction` callback's argument is the Tx of the consumers). */
  createDb: (databaseUrl: string) => Db & SqlDatabase<Tx> & { $disconnect(): Promise<void> };
  /** Extra GET routes (e.g. auth's JWKS), built once the runtime exists. */
  routes?: (runtime: ServiceRuntime<Db, Tx, Config>) => Record<string, () => Promise<unknown>>;
  /** Starts consumers and returns the resolvers. */
  wire: (runtime: ServiceRuntime<Db, Tx, Config>) => Promise<GraphQLResolverMap<C>> | GraphQLResolverMap<C>;
  /** The per-request context of the resolvers, from the verified caller (and the runtime, for per-request loaders). */
  context: (request: { caller: Caller | undefined; requestContext: RequestContext; runtime: ServiceRuntime<Db, Tx, Config> }) => Promise<C>;
}

/**
 * The whole start-up of a subgraph process: validated config, logger, database, JetStream
 * (streams, outbox relay, consumers), the Apollo subgraph with health endpoints, and an ordered
 * graceful shutdown. Each subgraph's main.ts only names its parts.
 */
export async function runSubgraphService<
  Db extends SqlDatabase<Tx>,
  Tx extends SqlExecutor,
  Config extends SubgraphConfig,
  C extends object,
>(service: SubgraphService<Db, Tx, Config, C>): Promise<ServiceRuntime<Db, Tx, Config>> {
  const config = loadConfig(service.configSchema ?? (subgraphConfigSchema as unknown as z.ZodType<Config>), process.env, { process: true });
  const logger = createLogger({ service: service.name, level: config.LOG_LEVEL });
  const lifecycle = new Lifecycle(logger);
  lifecycle.installSignalHandlers();
  if (config.VAULTPAY_SUPERVISED) lifecycle.exitWithParent();
  try {
    startProcessTracing(service.name, config, lifecycle);
    const databaseUrl = withDurableCommits(config.DATABASE_URL);
    const db = service.createDb(databaseUrl);
    lifecycle.onShutdown("database", () => db.$disconnect());
    const sql = new SqlPool(databaseUrl);
    lifecycle.onShutdown("database (raw SQL)", () => sql.$disconnect());
    await checkDurability(db, config.NODE_ENV === "production", logger);
    const metrics = createMetrics(service.name);
    const eventing = await startEventing({
      natsUrl: config.NATS_URL,
      name: service.name,
      logger,
      lifecycle,
      db: sql,
      metrics,
      streamLimits: streamLimitsOf(config),
    });
    registerEventingGauges(metrics, db, eventing);
    const redis = connectRedis(config.REDIS_URL, logger, lifecycle);
    const runtime: ServiceRuntime<Db, Tx, Config> = { config, logger, lifecycle, db, sql, eventing, metrics };
    const resolvers = await service.wire(runtime);
    await startSubgraph<C>({
      name: service.name,
      typeDefs: readFileSync(service.schemaUrl, "utf8"),
      resolvers,
      logger,
      lifecycle,
      port: config.PORT,
      host: config.HOST,
      introspection: introspectionEnabled(config),
      routes: service.routes?.(runtime),
      metrics,
      security: {
        gatewaySecret: config.GATEWAY_SECRET,
        verifyToken: createTokenVerifier(config.AUTH_JWKS_URL),
        isSessionRevoked: sessionRevocationsIn(redis),
        claimAssertionNonce: async (nonce) =>
          (await redis.set(assertionNonceKey(nonce), "1", "EX", ASSERTION_NONCE_TTL_SECONDS, "NX")) === "OK",
      },
      context: (_request, requestContext, caller) => service.context({ caller, requestContext, runtime }),
      instanceId: config.VAULTPAY_INSTANCE_ID,
      ready: async () =>
        eventing.connected() &&
        redis.status === "ready" &&
        (await db.$queryRawUnsafe("SELECT 1").then(
          () => true,
          () => false,
        )),
    });
    return runtime;
  } catch (error) {
    logger.fatal({ err: error }, "failed to start");
    await lifecycle.shutdown();
    process.exit(1);
  }
}

/**
 * The subgraph's Redis (revoked sessions, assertion nonces). Commands fail fast while Redis is
 * away: a request with a token is then refused rather than let through unchecked.
 */
function connectRedis(url: string, logger: Logger, lifecycle: Lifecycle): Redis {
  // Auto-pipelining: the nonce claim and the session check of a request, and those of requests
  // arriving together, go out in one write (a loopback write is a measurable share of the CPU).
  const redis = new Redis(url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, enableAutoPipelining: true });
  redis.on("error", (error) => logger.warn({ err: error }, "redis error"));
  lifecycle.onShutdown("redis", () =>
    redis.quit().then(
      () => undefined,
      () => undefined,
    ),
  );
  return redis;
}

/**
 * What an operator watches on every service's events: the outbox backlog and the age of its oldest
 * unpublished row (a stuck relay), the DLQ depth and how full each stream is (read from JetStream;
 * the same numbers on every service, so alert on their max).
 */
function registerEventingGauges(metrics: Metrics, db: SqlExecutor, eventing: Pick<Eventing<never>, "jsm" | "consumers">): void {
  metrics.gauge("vaultpay_consumer_pending", "Messages a durable has not been delivered yet (its lag)", ["consumer"], async () => {
    const infos = await Promise.all(
      eventing.consumers().map(async ({ name, stream }) => ({ name, info: await eventing.jsm.consumers.info(stream, name) })),
    );
    return infos.map(({ name, info }) => ({ labels: { consumer: name }, value: info.num_pending }));
  });
  metrics.gauge("vaultpay_consumer_ack_pending", "Messages a durable holds delivered but not yet acknowledged", ["consumer"], async () => {
    const infos = await Promise.all(
      eventing.consumers().map(async ({ name, stream }) => ({ name, info: await eventing.jsm.consumers.info(stream, name) })),
    );
    return infos.map(({ name, info }) => ({ labels: { consumer: name }, value: info.num_ack_pending }));
  });
  metrics.gauge("vaultpay_outbox_pending", "Outbox rows not yet published", [], async () => {
    const [row] = (await db.$queryRawUnsafe("SELECT count(*)::int AS n FROM outbox_event WHERE published_at IS NULL")) as Array<{
      n: number;
    }>;
    return [{ labels: {}, value: row?.n ?? 0 }];
  });
  metrics.gauge("vaultpay_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row (0 when none)", [], async () => {
    const [row] = (await db.$queryRawUnsafe(
      "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age FROM outbox_event WHERE published_at IS NULL",
    )) as Array<{ age: number }>;
    return [{ labels: {}, value: row?.age ?? 0 }];
  });
  metrics.gauge("vaultpay_dlq_messages", "Messages waiting in the DLQ stream", [], async () => {
    const info = await eventing.jsm.streams.info("DLQ");
    return [{ labels: {}, value: info.state.messages }];
  });
  metrics.gauge(
    "vaultpay_stream_fill_ratio",
    "Share of its byte limit a stream holds; a full stream refuses publishes and the saga waits (0 without a limit)",
    ["stream"],
    async () => {
      const infos = await Promise.all(Object.keys(STREAMS).map((name) => eventing.jsm.streams.info(name)));
      return infos.map(({ config, state }) => ({
        labels: { stream: config.name },
        value: config.max_bytes > 0 ? state.bytes / config.max_bytes : 0,
      }));
    },
  );
}

/** Resolver for a subgraph's `<name>Status` field: what an operator checks through the gateway. */
export function serviceStatus(runtime: { eventing: { connected(): boolean }; db: SqlExecutor }, service: string) {
  return async () => ({
    service,
    natsConnected: runtime.eventing.connected(),
    databaseReachable: await runtime.db.$queryRawUnsafe("SELECT 1").then(
      () => true,
      () => false,
    ),
  });
}
