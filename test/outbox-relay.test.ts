/**
 * The outbox relay's marks commit without waiting for the WAL flush, on SqlPool (set with BEGIN)
 * and on Prisma's client (set by the relay): a mark a crash loses leaves its row pending, and the
 * row published again is dropped by JetStream as the duplicate it is. Its publishes at commit go
 * out once each, in order, leave a refused row to the claim, and a poll's claim leaves them alone.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { connectJetStream, createEvent, OutboxRelay, type JetStreamLink, type SqlDatabase } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { createTestDatabase, startTestNats } from "@vaultpay/testing";
import { SqlPool } from "../packages/service/src/index.ts";
import { createDb } from "../subgraphs/audit/src/db.ts";

const logger = createLogger({ service: "relay-test", level: "silent" });

/** `db`, noting `synchronous_commit` as it stands when each transaction's work is done, just before its commit. */
function noteCommitSetting(db: SqlDatabase, seen: string[]): SqlDatabase {
  return {
    $queryRawUnsafe: (query, ...values) => db.$queryRawUnsafe(query, ...values),
    $executeRawUnsafe: (query, ...values) => db.$executeRawUnsafe(query, ...values),
    $transaction: (fn, options) =>
      db.$transaction(async (tx, opened) => {
        const result = await fn(tx, opened);
        const [row] = await tx.$queryRawUnsafe<Array<{ sync: string }>>(`SELECT current_setting('synchronous_commit') AS sync`);
        seen.push(row!.sync);
        return result;
      }, options),
  };
}

let nats: Awaited<ReturnType<typeof startTestNats>>;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let sql: pg.Client;
let link: JetStreamLink;
let pool: SqlPool;
let prisma: ReturnType<typeof createDb>;

beforeAll(async () => {
  [nats, database] = await Promise.all([startTestNats(), createTestDatabase("audit")]);
  sql = new pg.Client({ connectionString: database.url });
  await sql.connect();
  link = await connectJetStream(nats.url, "relay-test", logger);
  pool = new SqlPool(database.url, { max: 3 });
  prisma = createDb(database.url);
});
afterAll(async () => {
  await link?.nc.drain();
  await pool?.$disconnect();
  await prisma?.$disconnect();
  await sql?.end();
  await database?.drop();
  await nats?.stop();
});

/** auth.user.created events, committed to the outbox unpublished (as a writer's commit leaves them). */
const committed = async (...names: string[]) => {
  const events = names.map((name) =>
    createEvent("auth.user.created", { userId: `relay-${name}`, role: "CUSTOMER" }, { correlationId: `c-${name}`, actor: {} }),
  );
  for (const event of events) {
    await sql.query(`INSERT INTO outbox_event (id, subject, type, payload) VALUES ($1, $2, $2, $3)`, [event.id, event.type, event]);
  }
  return events;
};

describe("the outbox relay's marks", () => {
  /** A new auth.user.created event in the outbox, unpublished; its id. */
  const pendingRow = async (n: number) => (await committed(`user-${n}`))[0]!.id;
  const published = async (id: string) =>
    (await sql.query(`SELECT published_at IS NOT NULL AS marked FROM outbox_event WHERE id = $1`, [id])).rows[0].marked as boolean;
  /** Messages the AUTH stream holds for this test's subjects. */
  const stored = async () => (await link.jsm.streams.info("AUTH", { subjects_filter: "auth.user.created" })).state.messages;

  it.each([
    ["SqlPool", () => pool as SqlDatabase],
    ["Prisma's client", () => prisma as unknown as SqlDatabase],
  ])("are committed asynchronously on %s, and only the relay's", async (_name, db) => {
    const seen: string[] = [];
    const relay = new OutboxRelay({ db: noteCommitSetting(db(), seen), js: link.js, logger });
    const before = await stored();
    const id = await pendingRow(before);
    expect(await relay.publishBatch()).toEqual({ claimed: 1, published: 1 });
    expect(seen).toEqual(["off"]);
    expect(await published(id)).toBe(true);
    expect(await stored()).toBe(before + 1);
    // The connection's next transaction, a consumer's say, waits for its flush again.
    const [next] = await db().$transaction(
      async (tx) => await tx.$queryRawUnsafe<Array<{ sync: string }>>(`SELECT current_setting('synchronous_commit') AS sync`),
    );
    expect(next).toEqual({ sync: "on" });
  });

  it("leave a row whose mark a crash lost to be published again, and JetStream drops the copy", async () => {
    const relay = new OutboxRelay({ db: pool, js: link.js, logger });
    const id = await pendingRow(100);
    await relay.publishBatch();
    const before = await stored();
    // What a crash leaves when the mark's commit had not reached the disk: the row pending again.
    await sql.query(`UPDATE outbox_event SET published_at = NULL WHERE id = $1`, [id]);
    expect(await relay.publishBatch()).toEqual({ claimed: 1, published: 1 });
    expect(await published(id)).toBe(true);
    expect(await stored()).toBe(before);
  });
});

describe("the outbox relay's publishes at commit (publishCommitted)", () => {
  const running: OutboxRelay[] = [];

  const marked = async (ids: string[]) =>
    (await sql.query(`SELECT count(*)::int AS n FROM outbox_event WHERE id = ANY($1::uuid[]) AND published_at IS NOT NULL`, [ids])).rows[0]
      .n as number;
  /** Every publish on the subject as core NATS sees it (a copy JetStream drops as a duplicate too), in order. */
  const watch = () => {
    const seen: string[] = [];
    const subscription = link.nc.subscribe("auth.user.created", {
      callback: (_error, message) => {
        seen.push((message.json() as { data: { userId: string } }).data.userId);
      },
    });
    return { seen, stop: () => subscription.unsubscribe() };
  };
  /** A relay that only publishes when told: its poll (the claim) is a minute away. */
  const relayOn = (js = link.js, markLingerMs = 20) => {
    const relay = new OutboxRelay({ db: pool, js, logger, idleMs: 60_000, markLingerMs });
    relay.start();
    running.push(relay);
    return relay;
  };
  /** The test's JetStream client with its publish replaced by `publish`; the rest is the client's own. */
  const withPublish = (publish: (...args: Parameters<typeof link.js.publish>) => ReturnType<typeof link.js.publish>) =>
    new Proxy(link.js, {
      get(target, property) {
        if (property === "publish") return publish;
        const value = Reflect.get(target, property);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const until = async (check: () => Promise<boolean> | boolean) => {
    const deadline = Date.now() + 10_000;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error("timed out");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  afterAll(async () => {
    for (const relay of running) await relay.stop();
  });

  it("publishes a commit's events at once, in order, and marks them together", async () => {
    const relay = relayOn();
    await new Promise((resolve) => setTimeout(resolve, 200)); // its first claim found nothing
    const watcher = watch();
    const events = await committed("a1", "a2", "a3");
    relay.publishCommitted(events);
    await until(() => watcher.seen.length === 3);
    expect(watcher.seen).toEqual(["relay-a1", "relay-a2", "relay-a3"]);
    await until(async () => (await marked(events.map((event) => event.id))) === 3);
    watcher.stop();
  });

  it("a claim that meets a row being published at commit waits for that publish instead of sending another", async () => {
    const relay = relayOn(link.js, 60_000); // acknowledged rows stay unmarked until stop
    await new Promise((resolve) => setTimeout(resolve, 200));
    const watcher = watch();
    const events = await committed("b1", "b2");
    relay.publishCommitted(events);
    expect(await relay.publishBatch()).toEqual({ claimed: 2, published: 2 });
    expect(await marked(events.map((event) => event.id))).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(watcher.seen).toEqual(["relay-b1", "relay-b2"]); // one publish each
    await relay.stop(); // its marks find the rows marked and leave them
    expect(await marked(events.map((event) => event.id))).toBe(2);
    watcher.stop();
  });

  it("holds commits while publishes are in flight and sends them, in order, when the acknowledgements return", async () => {
    // JetStream's publish held at a gate: the first commit's publish stays in flight until it opens.
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const issued: string[] = [];
    const js = withPublish(async (...args) => {
      issued.push((JSON.parse(String(args[1])) as { data: { userId: string } }).data.userId);
      await gate;
      return link.js.publish(...args);
    });
    const relay = relayOn(js, 60_000); // acknowledged rows stay unmarked until stop
    await new Promise((resolve) => setTimeout(resolve, 200));
    const watcher = watch();
    const [first, ...later] = await committed("e1", "e2", "e3");
    relay.publishCommitted([first!]);
    relay.publishCommitted([later[0]!]);
    relay.publishCommitted([later[1]!]);
    expect(issued).toEqual(["relay-e1"]); // the later commits wait for e1's acknowledgement
    // A claim meeting the held rows waits for their publish instead of sending its own.
    const claim = relay.publishBatch();
    await new Promise((resolve) => setTimeout(resolve, 100));
    open();
    expect(await claim).toEqual({ claimed: 3, published: 3 });
    await until(() => watcher.seen.length === 3);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(watcher.seen).toEqual(["relay-e1", "relay-e2", "relay-e3"]); // one publish each, in order
    expect(issued).toEqual(["relay-e1", "relay-e2", "relay-e3"]);
    await relay.stop();
    expect(await marked([first!.id, ...later.map((event) => event.id)])).toBe(3);
    watcher.stop();
  });

  it("a poll's claim leaves rows younger than its minimum age to the publish at commit; a kick's claim takes them", async () => {
    const relay = new OutboxRelay({ db: pool, js: link.js, logger }); // not started: only these claims
    const [event] = await committed("d1");
    expect(await relay.publishBatch(60_000)).toEqual({ claimed: 0, published: 0 });
    expect(await marked([event!.id])).toBe(0);
    await sql.query(`UPDATE outbox_event SET created_at = now() - interval '2 minutes' WHERE id = $1`, [event!.id]);
    expect(await relay.publishBatch(60_000)).toEqual({ claimed: 1, published: 1 });
    const [young] = await committed("d2");
    expect(await relay.publishBatch()).toEqual({ claimed: 1, published: 1 });
    expect(await marked([event!.id, young!.id])).toBe(2);
  });

  it("leaves a row JetStream refused at commit pending, for the relay to publish", async () => {
    let refuse = true;
    const js = withPublish((...args) => (refuse ? Promise.reject(new Error("refused")) : link.js.publish(...args)));
    const relay = relayOn(js);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const watcher = watch();
    const [event] = await committed("c1");
    relay.publishCommitted([event!]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await marked([event!.id])).toBe(0);
    expect(watcher.seen).toEqual([]);
    refuse = false;
    // The failure woke the relay's claim, which keeps backing off while NATS refuses; the next one publishes it.
    await until(async () => (await marked([event!.id])) === 1);
    expect(watcher.seen).toEqual(["relay-c1"]);
    watcher.stop();
  });
});
