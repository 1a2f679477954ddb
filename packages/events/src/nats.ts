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
  const connection = await connect({
    // A cluster's seeds, comma-separated; the client learns the other servers from them and moves
    // to another when the one it uses goes away.
    servers: url.split(",").map((server) => server.trim()),
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
