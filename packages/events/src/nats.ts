import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Logger } from "@vaultpay/kit";
import { ensureStreams } from "./streams.ts";

export type { NatsConnection };

/**
 * Connects and keeps reconnecting for as long as the process lives: a NATS restart must pause
 * publishing and consuming, never end the service.
 */
export async function connectNats(url: string, name: string, logger: Logger): Promise<NatsConnection> {
  const connection = await connect({
    servers: url,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
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

/** Connects, makes sure the streams exist, and hands out the JetStream clients. */
export async function connectJetStream(url: string, name: string, logger: Logger): Promise<JetStreamLink> {
  const nc = await connectNats(url, name, logger);
  const jsm = await jetstreamManager(nc);
  await ensureStreams(jsm);
  return { nc, js: jetstream(nc), jsm };
}
