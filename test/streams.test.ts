/**
 * Stream durability as configured: every process passes NATS_STREAM_REPLICAS to the streams it
 * creates, a 3-node cluster (the one `pnpm start --cluster` runs) holds R3 streams, and a publish
 * is still acknowledged, and kept, while one node is dead. Stream retention as configured: the
 * event streams keep NATS_STREAM_MAX_AGE_HOURS of history within NATS_STREAM_MAX_BYTES, dead
 * letters stay until replayed, and no process loosens or tightens what another set by mistake.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gatewayConfigSchema } from "../gateway/src/config.ts";
import {
  DEFAULT_STREAM_LIMITS,
  STREAMS,
  connectJetStream,
  ensureStreams,
  streamLimitsOf,
  type JetStreamLink,
  type StreamLimits,
} from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { subgraphConfigSchema } from "../packages/service/src/index.ts";
import { startNatsCluster, type ManagedNatsCluster } from "@vaultpay/stack";
import { startTestNats, waitUntil } from "@vaultpay/testing";

const logger = createLogger({ service: "streams-test", level: "silent" });
const STREAM_NAMES = Object.keys(STREAMS);
const NS_PER_MS = 1_000_000;
const SUBGRAPH_SETTINGS = {
  PORT: "4001",
  DATABASE_URL: "postgres://h/db",
  GATEWAY_SECRET: "x".repeat(32),
  AUTH_JWKS_URL: "http://a/jwks",
  REDIS_URL: "redis://r",
};

/** Runs `work` on a private nats-server whose streams a process with `limits` made, then stops it. */
async function onOwnServer(limits: Partial<StreamLimits>, work: (link: JetStreamLink) => Promise<void>): Promise<void> {
  const nats = await startTestNats();
  try {
    const link = await connectJetStream(nats.url, "streams-test", logger, { ...DEFAULT_STREAM_LIMITS, ...limits });
    await work(link);
    await link.nc.drain();
  } finally {
    await nats.stop();
  }
}

describe("stream retention", () => {
  it("is read from NATS_STREAM_MAX_BYTES and NATS_STREAM_MAX_AGE_HOURS: 1 GiB and 7 days unless set", () => {
    const defaults = subgraphConfigSchema.parse(SUBGRAPH_SETTINGS);
    expect(streamLimitsOf(defaults)).toEqual({ replicas: 1, maxBytes: 1024 ** 3, maxAgeMs: 7 * 24 * 3_600_000 });
    const set = gatewayConfigSchema.parse({
      GATEWAY_SECRET: "x".repeat(32),
      AUTH_JWKS_URL: "http://a/jwks",
      NATS_STREAM_MAX_BYTES: String(50 * 1024 ** 3),
      NATS_STREAM_MAX_AGE_HOURS: "0",
    });
    expect(streamLimitsOf(set)).toMatchObject({ maxBytes: 50 * 1024 ** 3, maxAgeMs: 0 });
    expect(subgraphConfigSchema.safeParse({ ...SUBGRAPH_SETTINGS, NATS_STREAM_MAX_BYTES: "1000" }).success).toBe(false);
    expect(subgraphConfigSchema.safeParse({ ...SUBGRAPH_SETTINGS, NATS_STREAM_MAX_AGE_HOURS: "-1" }).success).toBe(false);
    expect(subgraphConfigSchema.safeParse({ ...SUBGRAPH_SETTINGS, NATS_STREAM_MAX_AGE_HOURS: "1.5" }).success).toBe(false);
  });

  it("event streams let go of messages past their age; dead letters stay", async () => {
    await onOwnServer({ maxAgeMs: 1_500 }, async (link) => {
      for (const name of STREAM_NAMES) {
        const { config } = await link.jsm.streams.info(name);
        expect(config.max_bytes).toBe(1024 ** 3);
        expect(config.max_age, name).toBe(name === "DLQ" ? 0 : 1_500 * NS_PER_MS);
        expect(config.duplicate_window).toBeLessThanOrEqual(name === "DLQ" ? 120_000 * NS_PER_MS : 1_500 * NS_PER_MS);
      }
      await link.js.publish("account.aged", "{}", { msgID: "aged-1" });
      await link.js.publish("dlq.account.aged", "{}", { msgID: "dead-1" });
      expect((await link.jsm.streams.info("ACCOUNTS")).state.messages).toBe(1);
      await waitUntil(async () => (await link.jsm.streams.info("ACCOUNTS")).state.messages === 0, "the aged event gone", 10_000);
      const accounts = await link.jsm.streams.info("ACCOUNTS");
      expect(accounts.state.first_seq).toBe(2);
      expect((await link.jsm.streams.info("DLQ")).state.messages).toBe(1);
    });
  });

  it("a full stream refuses publishes, losing none it holds, until its oldest messages age out", async () => {
    await onOwnServer({ maxBytes: 64 * 1024, maxAgeMs: 3_000 }, async (link) => {
      const payload = JSON.stringify({ filler: "x".repeat(1_000) });
      let accepted = 0;
      let refusal: unknown;
      while (refusal === undefined && accepted < 200) {
        await link.js.publish("account.filler", payload, { msgID: `filler-${accepted}` }).then(
          () => accepted++,
          (error: unknown) => (refusal = error),
        );
      }
      expect(String(refusal)).toMatch(/maximum bytes/i);
      expect(accepted).toBeGreaterThan(30);
      // Nothing it held was dropped to make room.
      expect((await link.jsm.streams.info("ACCOUNTS")).state).toMatchObject({ messages: accepted, first_seq: 1 });
      // Once the oldest age out there is room again: the outboxes' retries go through.
      const ack = await waitUntil(
        () => link.js.publish("account.filler", payload, { msgID: "after-the-age" }).catch(() => undefined),
        "a publish accepted again",
        10_000,
      );
      expect(ack.seq).toBe(accepted + 1);
    });
  });

  it("a process with other limits neither tightens a stream's limits nor leaves looser ones unapplied", async () => {
    // Made by a process given 50 MiB and no age limit (the operator's setting).
    await onOwnServer({ maxBytes: 50 * 1024 ** 2, maxAgeMs: 0 }, async (link) => {
      // Then a process started without those settings: the defaults would drop history and bytes.
      await ensureStreams(link.jsm, { ...DEFAULT_STREAM_LIMITS, maxBytes: 20 * 1024 ** 2 });
      let accounts = (await link.jsm.streams.info("ACCOUNTS")).config;
      expect(accounts.max_bytes).toBe(50 * 1024 ** 2);
      expect(accounts.max_age).toBe(0);
      // Streams made with an age take a longer one, and more bytes, from a process asking for them.
      await link.jsm.streams.update("ACCOUNTS", { ...accounts, max_age: 3_600_000 * NS_PER_MS });
      await ensureStreams(link.jsm, { ...DEFAULT_STREAM_LIMITS, maxBytes: 80 * 1024 ** 2 });
      accounts = (await link.jsm.streams.info("ACCOUNTS")).config;
      expect(accounts.max_age).toBe(DEFAULT_STREAM_LIMITS.maxAgeMs * NS_PER_MS);
      expect(accounts.max_bytes).toBe(80 * 1024 ** 2);
      expect(accounts.duplicate_window).toBe(120_000 * NS_PER_MS);
    });
  });
});

describe("NATS_STREAM_REPLICAS", () => {
  it("is read by the gateway's and the subgraphs' config: 1 unless set, bounded by JetStream's 5", () => {
    const subgraph = SUBGRAPH_SETTINGS;
    const gateway = { GATEWAY_SECRET: "x".repeat(32), AUTH_JWKS_URL: "http://a/jwks" };
    expect(subgraphConfigSchema.parse(subgraph).NATS_STREAM_REPLICAS).toBe(1);
    expect(subgraphConfigSchema.parse({ ...subgraph, NATS_STREAM_REPLICAS: "3" }).NATS_STREAM_REPLICAS).toBe(3);
    expect(gatewayConfigSchema.parse({ ...gateway, NATS_STREAM_REPLICAS: "3" }).NATS_STREAM_REPLICAS).toBe(3);
    expect(subgraphConfigSchema.safeParse({ ...subgraph, NATS_STREAM_REPLICAS: "6" }).success).toBe(false);
    expect(subgraphConfigSchema.safeParse({ ...subgraph, NATS_STREAM_REPLICAS: "0" }).success).toBe(false);
    // A cluster's seeds, comma-separated.
    expect(subgraphConfigSchema.parse({ ...subgraph, NATS_URL: "nats://a:4222, nats://b:4222" }).NATS_URL).toContain("nats://b:4222");
    expect(subgraphConfigSchema.safeParse({ ...subgraph, NATS_URL: "nats://a:4222,not a url" }).success).toBe(false);
  });

  it("on one server: streams have one copy, and three are refused rather than silently reduced", async () => {
    await onOwnServer({ replicas: 1 }, async (link) => {
      for (const name of STREAM_NAMES) expect((await link.jsm.streams.info(name)).config.num_replicas).toBe(1);
      await expect(ensureStreams(link.jsm, { ...DEFAULT_STREAM_LIMITS, replicas: 3 })).rejects.toThrow(
        /NATS_STREAM_REPLICAS=3 needs a NATS cluster/,
      );
    });
  });
});

describe("a 3-node JetStream cluster", () => {
  let dir: string;
  let cluster: ManagedNatsCluster;
  let link: JetStreamLink;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "vaultpay-cluster-"));
    cluster = await startNatsCluster(dir, { output: null });
  });
  afterAll(async () => {
    await link?.nc.drain().catch(() => undefined);
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("scales streams made with one copy up to the configured three, each with a leader and two followers", async () => {
    // As a platform moved from one server to the cluster: streams made R1, then a process started with 3.
    link = await connectJetStream(cluster.url, "streams-test", logger, { replicas: 1 });
    expect((await link.jsm.streams.info("ACCOUNTS")).config.num_replicas).toBe(1);
    await ensureStreams(link.jsm, { ...DEFAULT_STREAM_LIMITS, replicas: 3 });
    for (const name of STREAM_NAMES) {
      // The new copies are made in the background; the stream elects a leader among its three.
      const info = await waitUntil(async () => {
        const current = await link.jsm.streams.info(name);
        return current.cluster?.leader !== undefined && current.cluster.replicas?.length === 2 ? current : undefined;
      }, `${name} led, with two followers`);
      expect(info.config.num_replicas).toBe(3);
      expect(new Set([info.cluster!.leader, ...info.cluster!.replicas!.map((peer) => peer.name)])).toEqual(
        new Set(["nats-1", "nats-2", "nats-3"]),
      );
    }
    // A process started without the cluster's setting does not scale them down.
    await ensureStreams(link.jsm, { ...DEFAULT_STREAM_LIMITS, replicas: 1 });
    expect((await link.jsm.streams.info("ACCOUNTS")).config.num_replicas).toBe(3);
    // A tool (reconcile, dlq:replay, the audit rebuild) leaves them as they are.
    const tool = await connectJetStream(cluster.url, "tool", logger, false);
    expect((await tool.jsm.streams.info("ACCOUNTS")).config.num_replicas).toBe(3);
    await tool.nc.drain();
  });

  it("acknowledges publishes while the stream's leader is killed, and the restarted node catches up", async () => {
    const leader = (await link.jsm.streams.info("ACCOUNTS")).cluster!.leader!;
    const victim = cluster.nodes.find((node) => node.process.name === leader)!;
    expect(victim).toBeTruthy();
    await victim.process.kill();
    // Two of three remain: a new leader is elected and publishes are acked by a majority again.
    const acks = [];
    for (let index = 0; index < 20; index++) {
      acks.push(
        await waitUntil(
          () =>
            link.js
              .publish("account.test", JSON.stringify({ index }), { msgID: `cluster-test-${index}`, timeout: 2_000 })
              .catch(() => undefined),
          `publish ${index} acknowledged without ${leader}`,
        ),
      );
    }
    expect(new Set(acks.map((ack) => ack.seq)).size).toBe(20);
    expect(acks.every((ack) => ack.stream === "ACCOUNTS" && !ack.duplicate)).toBe(true);
    await victim.restart();
    // The restarted node holds every acked message again: ask it directly, as the leader if need be.
    await waitUntil(async () => {
      const info = await link.jsm.streams.info("ACCOUNTS");
      const peer = [...(info.cluster?.replicas ?? []), { name: info.cluster?.leader, current: true }].find(
        (replica) => replica.name === leader,
      );
      return peer?.current === true && info.state.messages === 20;
    }, `${leader} current again with all 20 messages`);
  });
});
