/**
 * Throughput of audit appends with real NATS and PostgreSQL (bench/audit-results.md). A benchmark,
 * not part of `pnpm test`:
 *   [AUDIT_BENCH_EVENTS_PER_STREAM=1000] [AUDIT_BENCH_BATCH=1,200] pnpm bench audit
 */
import { describe, expect, it } from "vitest";
import pg from "pg";
import { connectJetStream, createEvent, eventHeaders, startEventing, type Event, type JetStreamLink } from "@vaultpay/events";
import { createLogger, Lifecycle } from "@vaultpay/kit";
import { createTestDatabase, startTestNats, waitUntil } from "@vaultpay/testing";
import { verifyChain } from "../subgraphs/audit/src/service.ts";
import { SqlPool } from "../packages/service/src/index.ts";
import { createDb } from "../subgraphs/audit/src/db.ts";
import { AUDIT_BATCH_MAX_MESSAGES, startAuditConsumers } from "../subgraphs/audit/src/events.ts";
import { createAuditStore } from "../subgraphs/audit/src/store.ts";

const logger = createLogger({ service: "audit-bench", level: "silent" });
const EVENTS_PER_STREAM = Number(process.env.AUDIT_BENCH_EVENTS_PER_STREAM ?? 1_000);
const BATCH_MODES = (process.env.AUDIT_BENCH_BATCH ?? `1,${AUDIT_BATCH_MAX_MESSAGES}`).split(",").map(Number);

/** One event per stream for story n, all under one correlation id. */
function storyEvents(n: number): Event[] {
  const context = { correlationId: `bench-${n}`, actor: { userId: `user-${n % 100}` } };
  return [
    createEvent("auth.session.revoked", { userId: `u-${n}`, sessionId: `s-${n}`, reason: "logout" }, context),
    createEvent("account.debited", { transferId: `t-${n}`, accountId: `a-${n}`, amountMinor: "2500" }, context),
    createEvent("transaction.failed", { transferId: `t-${n}`, status: "FAILED", reason: "fraud" }, context),
    createEvent(
      "fraud.check.completed",
      { transferId: `t-${n}`, passed: false, riskScore: 80, reasons: ["velocity"], checkedAt: new Date().toISOString() },
      context,
    ),
    createEvent(
      "gateway.request",
      { operationName: "InitiateTransfer", operationType: "mutation", outcome: "success", errorCodes: [], durationMs: 12 },
      context,
    ),
  ];
}

async function publishAll(link: JetStreamLink, events: Event[]): Promise<void> {
  for (let i = 0; i < events.length; i += 200) {
    await Promise.all(
      events.slice(i, i + 200).map((e) => link.js.publish(e.type, JSON.stringify(e), { msgID: e.id, headers: eventHeaders(e) })),
    );
  }
}

async function recordsReach(sql: pg.Client, total: number): Promise<void> {
  await waitUntil(
    async () => (await sql.query(`SELECT count(*)::int AS n FROM audit_record`)).rows[0].n >= total,
    `${total} records`,
    600_000,
    20,
  );
}

function report(label: string, records: number, startedAt: number): void {
  const seconds = (performance.now() - startedAt) / 1000;
  console.log(`${label}: ${records} records in ${seconds.toFixed(2)} s = ${Math.round(records / seconds)} records/s`);
}

describe("audit throughput", () => {
  for (const maxBatch of BATCH_MODES) {
    it(`maxBatchMessages ${maxBatch}: drains a backlog of the five streams, then keeps up with live publishing`, {
      timeout: 900_000,
    }, async () => {
      const [nats, database] = await Promise.all([startTestNats(), createTestDatabase("audit")]);
      const link = await connectJetStream(nats.url, "audit-bench", logger);
      const db = createDb(database.url);
      const sql = new pg.Client({ connectionString: database.url });
      await sql.connect();
      const lifecycle = new Lifecycle(logger);
      try {
        // Backlog: everything is in the streams before the consumers start (as after an outage).
        const backlog = Array.from({ length: EVENTS_PER_STREAM }, (_, n) => storyEvents(n)).flat();
        await publishAll(link, backlog);
        let startedAt = performance.now();
        const pool = new SqlPool(database.url);
        lifecycle.onShutdown("raw SQL pool", () => pool.$disconnect());
        const eventing = await startEventing({ natsUrl: nats.url, name: "audit-bench", logger, lifecycle, db: pool });
        await startAuditConsumers({ eventing }, maxBatch);
        await recordsReach(sql, backlog.length);
        report(`maxBatchMessages ${maxBatch}, backlog`, backlog.length, startedAt);

        // Live: consumers caught up and idle; one client publishes as fast as it can.
        const live = Array.from({ length: EVENTS_PER_STREAM }, (_, n) => storyEvents(EVENTS_PER_STREAM + n)).flat();
        startedAt = performance.now();
        await publishAll(link, live);
        const publishedSeconds = (performance.now() - startedAt) / 1000;
        await recordsReach(sql, backlog.length + live.length);
        report(`maxBatchMessages ${maxBatch}, live (published in ${publishedSeconds.toFixed(2)} s)`, live.length, startedAt);
        expect(await verifyChain(createAuditStore(db))).toMatchObject({ valid: true, checked: backlog.length + live.length });
      } finally {
        await lifecycle.shutdown();
        await link.nc.close();
        await db.$disconnect();
        await sql.end();
        await Promise.all([nats.stop(), database.drop()]);
      }
    });
  }
});
