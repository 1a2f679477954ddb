/**
 * Dead letters through the gateway, with the whole stack running: a consumer that keeps failing
 * dead-letters a real event (a customer's account.created), an ADMIN lists it with its last error,
 * a CUSTOMER is refused (by the gateway, and by the audit subgraph itself when the gateway is
 * bypassed), bad input is refused with its code, and the replay — once the cause is fixed —
 * delivers the event again, empties DLQ and lands in the audit chain naming the ADMIN.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventConsumer, connectJetStream, type JetStreamLink } from "@vaultpay/events";
import { GATEWAY_ASSERTION_HEADER, createLogger, signGatewayAssertion } from "@vaultpay/kit";
import { createTestDatabase, mintAccessToken, startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";
import type { DeadLetter } from "../apps/web/src/operations.ts";
import { createDb, type Tx } from "../subgraphs/audit/src/db.ts";

const logger = createLogger({ service: "dead-letters-test", level: "silent" });
/** A consumer of this test's own, on the stack's NATS: it fails until the test "fixes the cause". */
const FLAKY = "e2e-flaky-accounts";

const DEAD_LETTERS = `query DeadLetters($consumer: String, $first: Int) {
  deadLetters(consumer: $consumer, first: $first) { id consumer stream subject eventId eventType correlationId deliveryCount lastError deadLetteredAt }
}`;
const REPLAY = `mutation Replay($consumer: String, $ids: [ID!]) { replayDeadLetters(consumer: $consumer, ids: $ids) { replayed remaining auditEventId } }`;
const AUDIT_LOG = `query ($correlationId: String, $type: String) { auditLog(correlationId: $correlationId, type: $type) { id type actorUserId data } }`;

describe("dead letters through the gateway", () => {
  let stack: TestStack & { teardown: () => Promise<void> };
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: ReturnType<typeof createDb>;
  let sql: pg.Client;
  let link: JetStreamLink;
  let flaky: EventConsumer<Tx>;
  let causeFixed = false;
  const admin = { userId: randomUUID(), role: "ADMIN" as const };
  const customer = { userId: randomUUID(), role: "CUSTOMER" as const };
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    [stack, database] = await Promise.all([startTestStack(), createTestDatabase("audit")]);
    for (const [name, claims] of Object.entries({ admin, customer }))
      tokens[name] = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, claims);
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
    await sql.query(`CREATE TABLE flaky_effect (event_id uuid PRIMARY KEY)`);
    db = createDb(database.url);
    link = await connectJetStream(stack.nats.url, "dead-letters-test", logger);
    flaky = new EventConsumer<Tx>({
      name: FLAKY,
      stream: "ACCOUNTS",
      filterSubject: "account.created",
      db,
      js: link.js,
      jsm: link.jsm,
      logger,
      maxDeliver: 2,
      backoffMs: [50],
      handle: async (event, tx) => {
        if (!causeFixed) throw new Error("ledger unavailable");
        await tx.$executeRawUnsafe(`INSERT INTO flaky_effect (event_id) VALUES ($1::uuid)`, event.id);
      },
    });
    await flaky.start();
  }, 180_000);

  afterAll(async () => {
    await flaky?.stop();
    await link?.nc.close();
    await db?.$disconnect();
    await sql?.end();
    await Promise.all([stack?.teardown(), database?.drop()]);
  });

  const as = (who: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${tokens[who]}`, ...extra });
  const codes = (result: { errors?: Array<{ extensions?: Record<string, unknown> }> }) =>
    result.errors?.map((error) => error.extensions?.code);

  it("lists a real dead letter to an ADMIN only, replays it once fixed, and audits the replay", async () => {
    const openedUnder = `e2e-dlq-open-${randomUUID()}`;
    const opened = await stack.graphql<{ openAccount: { id: string } }>(
      `mutation { openAccount(type: SAVINGS) { id } }`,
      {},
      as("customer", { "x-correlation-id": openedUnder }),
    );
    expect(opened.errors).toBeUndefined();

    const [letter] = await waitUntil(async () => {
      const result = await stack.graphql<{ deadLetters: DeadLetter[] }>(DEAD_LETTERS, { consumer: FLAKY }, as("admin"));
      expect(result.errors).toBeUndefined();
      return result.data!.deadLetters.length > 0 && result.data!.deadLetters;
    }, "the dead letter");
    expect(letter).toMatchObject({
      consumer: FLAKY,
      stream: "ACCOUNTS",
      subject: "account.created",
      eventType: "account.created",
      correlationId: openedUnder,
      deliveryCount: 2,
      lastError: "Error: ledger unavailable",
    });
    expect(letter!.id).toMatch(/^[1-9]\d*$/);
    expect(Date.parse(letter!.deadLetteredAt)).toBeGreaterThan(Date.now() - 60_000);
    // Only this consumer gave up: the stack's own consumers applied the same event.
    const all = await stack.graphql<{ deadLetters: DeadLetter[] }>(DEAD_LETTERS, {}, as("admin"));
    expect(all.data!.deadLetters.map((each) => each.consumer)).toEqual([FLAKY]);

    // Refused to a customer at the gateway, and by the audit subgraph itself (zero trust).
    expect(codes(await stack.graphql(DEAD_LETTERS, {}, as("customer")))).toEqual(["FORBIDDEN"]);
    expect(codes(await stack.graphql(REPLAY, { consumer: FLAKY }, as("customer")))).toEqual(["FORBIDDEN"]);
    expect(codes(await stack.graphql(DEAD_LETTERS, {}))).toEqual(["UNAUTHENTICATED"]);
    for (const query of [DEAD_LETTERS, REPLAY]) {
      const body = JSON.stringify({ query, variables: { consumer: FLAKY } });
      const correlationId = `corr-${randomUUID()}`;
      const direct = await fetch(stack.urls.audit, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-correlation-id": correlationId,
          [GATEWAY_ASSERTION_HEADER]: signGatewayAssertion(stack.secrets.GATEWAY_SECRET, { correlationId, body }),
          ...as("customer"),
        },
        body,
      });
      expect(codes((await direct.json()) as { errors?: Array<{ extensions?: Record<string, unknown> }> })).toEqual(["FORBIDDEN"]);
    }

    // Bad input, each with its code.
    expect(codes(await stack.graphql(DEAD_LETTERS, { consumer: "no-such-consumer" }, as("admin")))).toEqual(["NOT_FOUND"]);
    expect(codes(await stack.graphql(DEAD_LETTERS, { consumer: "dlq.>" }, as("admin")))).toEqual(["BAD_USER_INPUT"]);
    expect(codes(await stack.graphql(DEAD_LETTERS, { first: 501 }, as("admin")))).toEqual(["BAD_USER_INPUT"]);
    expect(codes(await stack.graphql(REPLAY, { consumer: "no-such-consumer" }, as("admin")))).toEqual(["NOT_FOUND"]);
    expect(codes(await stack.graphql(REPLAY, { ids: ["first"] }, as("admin")))).toEqual(["BAD_USER_INPUT"]);
    expect(codes(await stack.graphql(REPLAY, { ids: [] }, as("admin")))).toEqual(["BAD_USER_INPUT"]);
    expect(codes(await stack.graphql(REPLAY, { consumer: "audit-accounts", ids: [letter!.id] }, as("admin")))).toEqual(["BAD_USER_INPUT"]);
    expect((await link.jsm.streams.info("DLQ")).state.messages).toBe(1); // none of these replayed anything
    expect((await sql.query(`SELECT count(*)::int AS n FROM flaky_effect`)).rows[0].n).toBe(0);

    causeFixed = true;
    const replayedUnder = `e2e-dlq-replay-${randomUUID()}`;
    const replay = await stack.graphql<{ replayDeadLetters: { replayed: number; remaining: number; auditEventId: string | null } }>(
      REPLAY,
      { consumer: FLAKY },
      as("admin", { "x-correlation-id": replayedUnder }),
    );
    expect(replay.errors).toBeUndefined();
    expect(replay.data!.replayDeadLetters).toMatchObject({ replayed: 1, remaining: 0 });
    await waitUntil(
      async () => (await sql.query(`SELECT event_id FROM flaky_effect`)).rows[0]?.event_id === letter!.eventId,
      "the replayed event applied",
    );
    expect((await stack.graphql<{ deadLetters: DeadLetter[] }>(DEAD_LETTERS, {}, as("admin"))).data!.deadLetters).toEqual([]);
    // The letter is gone: naming it again is NOT_FOUND, and a replay of the consumer finds nothing.
    expect(codes(await stack.graphql(REPLAY, { ids: [letter!.id] }, as("admin")))).toEqual(["NOT_FOUND"]);
    expect((await stack.graphql(REPLAY, { consumer: FLAKY }, as("admin"))).data).toEqual({
      replayDeadLetters: { replayed: 0, remaining: 0, auditEventId: null },
    });

    // The replay in the audit chain: the ADMIN who asked and what was replayed, never the payload.
    const [record] = await waitUntil(async () => {
      const result = await stack.graphql<{ auditLog: Array<{ id: string; type: string; actorUserId: string | null; data: string }> }>(
        AUDIT_LOG,
        { correlationId: replayedUnder, type: "operator.dlq.replay.requested" },
        as("admin"),
      );
      expect(result.errors).toBeUndefined();
      return result.data!.auditLog.length > 0 && result.data!.auditLog;
    }, "the replay's audit record");
    expect(record).toMatchObject({ id: replay.data!.replayDeadLetters.auditEventId, actorUserId: admin.userId });
    expect(JSON.parse(record!.data)).toEqual({
      consumer: FLAKY,
      deadLetters: [
        {
          dlqSeq: Number(letter!.id),
          consumer: FLAKY,
          stream: "ACCOUNTS",
          subject: "account.created",
          eventId: letter!.eventId,
          eventType: "account.created",
        },
      ],
    });
    expect(record!.data).not.toContain("numberBlindIndex");
    const verification = await stack.graphql<{ verifyAuditChain: { valid: boolean } }>(`{ verifyAuditChain { valid } }`, {}, as("admin"));
    expect(verification.data!.verifyAuditChain.valid).toBe(true);
  });
});
