/**
 * The delivery guarantees of the events package, with real processes killed at the worst moments:
 * an event committed through the accounts outbox reaches a consumer in the audit database exactly
 * once in effect.
 */
import { spawn } from "node:child_process";
import readline from "node:readline";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { natsServers } from "@vaultpay/events";
import { REPO_ROOT } from "@vaultpay/stack";
import { createTestDatabase, startTestNats, waitUntil } from "@vaultpay/testing";

type Worker = {
  facts: Array<Record<string, unknown>>;
  exited: Promise<string>;
  waitFor: (key: string) => Promise<Record<string, unknown>>;
  kill: () => void;
};

function startWorker(mode: string, env: Record<string, string>): Worker {
  const child = spawn(process.execPath, ["test/workers/delivery-worker.ts", mode], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const facts: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    if (!line.startsWith("{")) return;
    facts.push(JSON.parse(line) as Record<string, unknown>);
    for (const wake of waiters.splice(0)) wake();
  });
  const exited = new Promise<string>((resolve) => child.once("exit", (code, signal) => resolve(String(signal ?? code))));
  return {
    facts,
    exited,
    kill: () => child.kill("SIGKILL"),
    async waitFor(key) {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const fact = facts.find((f) => key in f);
        if (fact) return fact;
        if (Date.now() > deadline) throw new Error(`worker ${mode} never reported ${key}: ${JSON.stringify(facts)}`);
        await Promise.race([new Promise<void>((r) => waiters.push(r)), exited, new Promise((r) => setTimeout(r, 200))]);
      }
    },
  };
}

describe("outbox → JetStream → idempotent durable consumer", () => {
  let nats: Awaited<ReturnType<typeof startTestNats>>;
  let publisher: Awaited<ReturnType<typeof createTestDatabase>>;
  let consumer: Awaited<ReturnType<typeof createTestDatabase>>;
  let publisherSql: pg.Client;
  let consumerSql: pg.Client;
  const workers: Worker[] = [];

  beforeAll(async () => {
    [nats, publisher, consumer] = await Promise.all([startTestNats(), createTestDatabase("accounts"), createTestDatabase("audit")]);
    publisherSql = new pg.Client({ connectionString: publisher.url });
    consumerSql = new pg.Client({ connectionString: consumer.url });
    await Promise.all([publisherSql.connect(), consumerSql.connect()]);
    // Stand-ins for a domain row and a consumer's effect; the outbox tables are the real ones.
    await publisherSql.query(`CREATE TABLE delivery_account (id text PRIMARY KEY)`);
    await consumerSql.query(`CREATE TABLE delivery_effect (seq serial PRIMARY KEY, event_id uuid NOT NULL)`);
  });

  afterAll(async () => {
    for (const worker of workers) worker.kill();
    await Promise.all([publisherSql?.end(), consumerSql?.end()]);
    await Promise.all([nats?.stop(), publisher?.drop(), consumer?.drop()]);
  });

  const env = () => ({ NATS_URL: nats.url, PUBLISHER_DATABASE_URL: publisher.url, CONSUMER_DATABASE_URL: consumer.url });

  it("survives a publisher killed between commit and publish and a consumer killed before ack", async () => {
    const accountId = randomUUID();
    const dying = startWorker("publish-then-die", { ...env(), ACCOUNT_ID: accountId });
    workers.push(dying);
    const { committed: eventId } = await dying.waitFor("committed");
    expect(await dying.exited).toBe("SIGKILL");

    // The crash left the state change and its event committed, and nothing published.
    const outbox = await publisherSql.query(`SELECT published_at FROM outbox_event WHERE id = $1`, [eventId]);
    expect(outbox.rows).toEqual([{ published_at: null }]);
    expect((await publisherSql.query(`SELECT 1 FROM delivery_account WHERE id = $1`, [accountId])).rowCount).toBe(1);

    const consumerThatDies = startWorker("consume-then-die", env());
    workers.push(consumerThatDies);
    await consumerThatDies.waitFor("consumer");
    const relay = startWorker("relay", env());
    workers.push(relay);
    await relay.waitFor("relay");

    // The consumer commits the effect, then dies before its ack reaches the server.
    await consumerThatDies.waitFor("committedEffect");
    expect(await consumerThatDies.exited).toBe("SIGKILL");

    const healthy = startWorker("consume", env());
    workers.push(healthy);
    await healthy.waitFor("consumer");

    const nc = await connect(natsServers(nats.url));
    try {
      const jsm = await jetstreamManager(nc);
      // After ack_wait the server redelivers; the consumer finds the event recorded and only acks.
      const info = await waitUntil(async () => {
        const current = await jsm.consumers.info("ACCOUNTS", "audit-delivery-test");
        return current.ack_floor.stream_seq === 1 && current.num_ack_pending === 0 && current;
      }, "the redelivered message to be acknowledged");
      expect(info.delivered.stream_seq).toBe(1);
      expect((await jsm.streams.info("ACCOUNTS")).state.messages).toBe(1);
    } finally {
      await nc.close();
    }
    expect(healthy.facts.some((fact) => "committedEffect" in fact)).toBe(false);
    const effects = await consumerSql.query(`SELECT event_id FROM delivery_effect`);
    expect(effects.rows).toEqual([{ event_id: eventId }]);
    const marked = await waitUntil(async () => {
      const row = await publisherSql.query(`SELECT published_at FROM outbox_event WHERE id = $1`, [eventId]);
      return row.rows[0]?.published_at !== null && row.rows[0];
    }, "the outbox row to be marked published");
    expect(marked.published_at).toBeInstanceOf(Date);
  });

  it("a row republished after a crash before its mark is dropped by JetStream de-duplication", async () => {
    const before = await publisherSql.query(`SELECT count(*)::int AS n FROM outbox_event WHERE published_at IS NOT NULL`);
    expect(before.rows[0].n).toBe(1);
    // The state a relay leaves when it dies after publishing but before marking the row.
    await publisherSql.query(`UPDATE outbox_event SET published_at = NULL`);
    await waitUntil(async () => {
      const row = await publisherSql.query(`SELECT count(*)::int AS n FROM outbox_event WHERE published_at IS NULL`);
      return row.rows[0].n === 0;
    }, "the relay to republish");
    const nc = await connect(natsServers(nats.url));
    try {
      const jsm = await jetstreamManager(nc);
      expect((await jsm.streams.info("ACCOUNTS")).state.messages).toBe(1);
    } finally {
      await nc.close();
    }
    expect((await consumerSql.query(`SELECT count(*)::int AS n FROM delivery_effect`)).rows[0].n).toBe(1);
  });

  it("a row that cannot be published does not hold back the rows after it", async () => {
    // A subject no stream captures: JetStream answers every publish with "no responders".
    const poisonId = randomUUID();
    await publisherSql.query(
      `INSERT INTO outbox_event (id, subject, type, payload) VALUES ($1, 'nostream.poison', 'nostream.poison', '{}'::jsonb)`,
      [poisonId],
    );
    const dying = startWorker("publish-then-die", { ...env(), ACCOUNT_ID: randomUUID() });
    workers.push(dying);
    const { committed: laterId } = await dying.waitFor("committed");
    // The relay worker from the first test is still running: the later row goes out past the poison.
    await waitUntil(async () => {
      const row = await publisherSql.query(`SELECT published_at FROM outbox_event WHERE id = $1`, [laterId]);
      return row.rows[0]?.published_at !== null && row.rows[0];
    }, "the row behind the unpublishable one to be published");
    const poison = await publisherSql.query(`SELECT published_at FROM outbox_event WHERE id = $1`, [poisonId]);
    expect(poison.rows).toEqual([{ published_at: null }]);
    await publisherSql.query(`DELETE FROM outbox_event WHERE id = $1`, [poisonId]);
  });
});
