import { connect } from "@nats-io/transport-node";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "@vaultpay/kit";
import { DEFAULT_STREAM_LIMITS, ensureStreams, type StreamLimits } from "./streams.ts";

export type { Msg, NatsConnection };

/**
 * Connects and keeps reconnecting for as long as the process lives: a NATS restart must pause
 * publishing and consuming, never end the service.
 */
export async function connectNats(url: string, name: string, logger: Logger): Promise<NatsConnection> {
  const { servers, user, pass } = natsServers(url);
  const connection = await connect({
    // A cluster's seeds, comma-separated; the client learns the other servers from them and moves
    // to another when the one it uses goes away.
    servers,
    ...(user === undefined ? {} : { user, pass }),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    // Without it the client builds an Error, stack and all, for every publish and request up
    // front, to name where a timeout started: ~5 % of the gateway's CPU in a profile (one
    // publish per GraphQL request). Our logs name the operation and correlation id instead.
    noAsyncTraces: true,
  });
  void (async () => {
    for await (const status of connection.status()) {
      if (status.type === "disconnect" || status.type === "reconnect") logger.warn({ nats: status.type }, "nats connection changed");
    }
  })();
  return connection;
}

/**
 * NATS_URL's servers and the user they are reached as: `nats://transactions:<password>@host:4222`,
 * as DATABASE_URL and REDIS_URL carry theirs (nats.js reads no credentials from a URL). A
 * cluster's URLs name one user; the servers are returned without it, so the client never shows
 * the password (in its errors or the servers it learns).
 */
export function natsServers(url: string): { servers: string[]; user?: string; pass?: string } {
  const parsed = url.split(",").map((part) => new URL(part.trim()));
  const identities = new Set(parsed.map((server) => `${server.username}:${server.password}`));
  if (identities.size > 1) throw new Error("NATS_URL: every server must name the same user and password");
  const [first] = parsed;
  const user = first?.username ? decodeURIComponent(first.username) : undefined;
  const pass = first?.password ? decodeURIComponent(first.password) : undefined;
  const servers = parsed.map((server) => {
    server.username = "";
    server.password = "";
    return server.href.replace(/\/$/, "");
  });
  return user === undefined ? { servers } : { servers, user, pass: pass ?? "" };
}

/** A NATS URL reaching its server as `user` (the form natsServers reads back). */
export function natsUrlAs(url: string, user: string, password: string): string {
  const server = new URL(url);
  server.username = encodeURIComponent(user);
  server.password = encodeURIComponent(password);
  return server.href.replace(/\/$/, "");
}

/** A NATS URL fit for a log line or a terminal: its servers without the password. */
export function redactNatsUrl(url: string): string {
  return url
    .split(",")
    .map((part) => {
      const server = new URL(part.trim());
      if (server.password) server.password = "***";
      return server.href.replace(/\/$/, "");
    })
    .join(",");
}

export interface JetStreamLink {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/**
 * Connects, makes sure the streams exist with the given replica count (NATS_STREAM_REPLICAS), and
 * hands out the JetStream clients. Tools that only read or republish (`streams: false`) leave the
 * streams as the services made them: a tool run without the platform's settings must not scale a
 * cluster's R3 streams down to one copy.
 */
export async function connectJetStream(
  url: string,
  name: string,
  logger: Logger,
  streams: Partial<StreamLimits> | false = {},
): Promise<JetStreamLink> {
  const nc = await connectNats(url, name, logger);
  // Not checked here: a cluster still electing its leader answers the check late; ensureStreams
  // waits for it, bounded.
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  if (streams !== false) await ensureStreams(jsm, { ...DEFAULT_STREAM_LIMITS, ...streams });
  return { nc, js: jetstream(nc), jsm };
}
