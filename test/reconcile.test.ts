/**
 * The reconciliation against a whole running platform. The losses of a PostgreSQL crash with
 * synchronous_commit=off (issue 15) are recreated by hand: a transfer whose row and outbox vanished
 * after accounts debited it, and an event the audit consumer acked although its append was undone.
 * Reconcile finds both, repairs them through the normal paths, exactly once, and stays quiet about
 * everything correct, sagas in flight included.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendToOutbox, connectJetStream, createEvent, eventHeaders, parseEvent, type JetStreamLink } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import {
  CHECKPOINT_OVERLAP_MS,
  OUTBOX_SERVICES,
  RECONCILIATION_REFUND_REASON,
  loadMoneyCheckpoint,
  processedEventKeepMs,
  prunedProcessedRows,
  uuidV7Floor,
  prunedRows,
  reconcile,
  sqlExecutor,
  type ReconcileReport,
} from "@vaultpay/reconcile";
import { REPO_ROOT } from "@vaultpay/stack";
import { fraudOnlyOnAmount, mintAccessToken, startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";

/** Short, so the test can wait it out; long enough that a saga step in progress is inside it. */
const GRACE_MS = 3_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const logger = createLogger({ service: "reconcile-test", level: "silent" });

interface Customer {
  token: string;
  accountId: string;
  number: string;
}

describe("reconciliation", () => {
  let stack: TestStack & { teardown: () => Promise<void> };
  let accountsSql: pg.Client;
  let transactionsSql: pg.Client;
  let auditSql: pg.Client;
  let nats: JetStreamLink;
  let admin: string;
  let alice: Customer;
  let bob: Customer;
  let carol: Customer;
  const transfers: Record<"vanishing" | "completing" | "fraudulent" | "unfunded" | "returning", string> = {} as never;

  beforeAll(async () => {
    stack = await startTestStack({
      env: {
        // Transfers over 40 000 fail the fraud check; steps never time out while fraud is stopped.
        ...fraudOnlyOnAmount(40_000n),
        SAGA_STEP_TIMEOUT_MS: "120000",
      },
    });
    ({ accounts: accountsSql, transactions: transactionsSql, audit: auditSql } = await connectTo(["accounts", "transactions", "audit"]));
    nats = await connectJetStream(stack.nats.url, "reconcile-test", logger);
    admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
    [alice, bob, carol] = await Promise.all([customer(100_000n), customer(100_000n), customer(500n)]);
    await waitUntil(
      async () => (await transactionsSql.query(`SELECT count(*)::int AS n FROM account_directory`)).rows[0].n === 3,
      "the account directory",
    );
  });

  afterAll(async () => {
    await nats?.nc.drain();
    await Promise.all([accountsSql?.end(), transactionsSql?.end(), auditSql?.end()]);
    await stack?.teardown();
  });

  async function call<T>(token: string, query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const result = await stack.graphql<T>(query, variables, { authorization: `Bearer ${token}` });
    if (result.errors) throw new Error(JSON.stringify(result.errors));
    return result.data!;
  }

  async function customer(depositMinor: bigint): Promise<Customer> {
    const token = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER", expiresInSeconds: 3600 });
    const { openAccount } = await call<{ openAccount: { id: string; number: string } }>(
      token,
      `mutation { openAccount(type: SAVINGS) { id number } }`,
    );
    await call(
      admin,
      `mutation($id: ID!, $amount: MinorUnits!, $key: String!) { depositFunds(accountId: $id, amountMinor: $amount, idempotencyKey: $key) { id } }`,
      {
        id: openAccount.id,
        amount: depositMinor.toString(),
        key: randomUUID(),
      },
    );
    return { token, accountId: openAccount.id, number: openAccount.number };
  }

  async function send(from: Customer, to: Customer, amountMinor: number): Promise<string> {
    const { initiateTransfer } = await call<{ initiateTransfer: { id: string } }>(
      from.token,
      `mutation($from: ID!, $to: String!, $amount: MinorUnits!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: $amount, idempotencyKey: $key) { id } }`,
      { from: from.accountId, to: to.number, amount: String(amountMinor), key: randomUUID() },
    );
    return initiateTransfer.id;
  }

  const statusOf = async (id: string) =>
    (await transactionsSql.query<{ status: string }>(`SELECT status::text FROM transfer WHERE id = $1`, [id])).rows[0]?.status;
  const statusesOf = async (ids: string[]) =>
    (
      await transactionsSql.query<{ status: string }>(`SELECT status::text FROM transfer WHERE id = ANY($1::uuid[]) ORDER BY id`, [ids])
    ).rows.map((row) => row.status);
  const balanceOf = async (account: Customer) =>
    BigInt((await accountsSql.query(`SELECT balance_minor::text AS b FROM account WHERE id = $1`, [account.accountId])).rows[0].b);
  const journalOf = async (transferId: string) =>
    (
      await accountsSql.query<{ kind: string; amount: string }>(
        `SELECT kind::text, amount_minor::text AS amount FROM journal_entry WHERE transfer_id = $1 ORDER BY seq`,
        [transferId],
      )
    ).rows;
  /** A run as the 5-minute job does it (from the checkpoint); with pageSize, a full one read in pages of that size. */
  const run = (repair = false, pageSize?: number): Promise<ReconcileReport> =>
    reconcile({
      databaseUrls: stack.databaseUrls,
      natsUrl: stack.nats.url,
      graceMs: GRACE_MS,
      repair,
      logger,
      ...(pageSize ? { pageSize, full: true } : {}),
    });
  /** A client of each of these services' databases (the caller ends them). */
  async function connectTo<S extends keyof TestStack["databaseUrls"]>(services: readonly S[]): Promise<Record<S, pg.Client>> {
    const clients = await Promise.all(
      services.map(async (service) => {
        const client = new pg.Client({ connectionString: stack.databaseUrls[service] });
        await client.connect();
        return [service, client] as const;
      }),
    );
    return Object.fromEntries(clients) as Record<S, pg.Client>;
  }
  /** Deletes the stream's messages whose event matches (what a lost commit never published). */
  async function deleteFromStream(stream: string, matches: (event: { type: string; data: Record<string, unknown> }) => boolean) {
    const { state } = await nats.jsm.streams.info(stream);
    let deleted = 0;
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) {
      const message = await nats.jsm.streams.getMessage(stream, { seq }).catch(() => null);
      if (message && matches(message.json())) deleted += Number(await nats.jsm.streams.deleteMessage(stream, seq));
    }
    expect(deleted).toBe(1);
  }
  const about = (report: ReconcileReport, subject: string) =>
    report.findings.filter((finding) => finding.transferId === subject || finding.eventId === subject);

  it("stays quiet about sagas in flight, and reports one that stopped moving once the grace period passed", async () => {
    // History older than the grace period (accounts, deposits, their events) is judged from the first run on.
    await sleep(GRACE_MS + 200);
    await stack.processes.get("fraud")!.kill();
    transfers.vanishing = await send(alice, bob, 1_000);
    transfers.completing = await send(alice, bob, 2_000);
    transfers.fraudulent = await send(alice, bob, 50_000);
    transfers.returning = await send(bob, alice, 3_000);
    transfers.unfunded = await send(carol, bob, 10_000);
    const waiting = [transfers.vanishing, transfers.completing, transfers.fraudulent, transfers.returning];
    await waitUntil(async () => (await statusesOf(waiting)).join() === "DEBITED,DEBITED,DEBITED,DEBITED", "the debits (fraud is stopped)");
    await waitUntil(async () => (await statusOf(transfers.unfunded)) === "REJECTED", "the unfunded transfer's rejection");

    const inFlight = await run();
    expect(inFlight.findings).toEqual([]);

    // Once nothing moved for longer than the grace period, the same sagas are reported as stuck.
    await sleep(GRACE_MS + 200);
    const stuck = await run();
    for (const id of waiting)
      expect(
        about(stuck, id).map((finding) => finding.code),
        id,
      ).toEqual(["TRANSFER_STUCK"]);
    expect(about(stuck, transfers.unfunded)).toEqual([]);
  });

  it("finds a debit whose transfer vanished, refunds it once through the saga's path, and changes nothing on a second run", async () => {
    const vanishing = transfers.vanishing;
    // The crash: transactions' commits of the transfer (row, history, outbox) are undone after
    // transaction.initiated went out and accounts debited. No trigger guards these tables. The
    // undone commits include the DEBITED step's, so its fraud request never went out either: were
    // it answered, accounts would credit on the passed verdict and the customer's instruction
    // would complete (money moved for a transfer transactions lost, MOVEMENTS_WITHOUT_TRANSFER).
    await transactionsSql.query("BEGIN");
    await transactionsSql.query(`DELETE FROM outbox_event WHERE payload->'data'->>'transferId' = $1`, [vanishing]);
    await transactionsSql.query(`DELETE FROM transfer_status_change WHERE transfer_id = $1`, [vanishing]);
    expect((await transactionsSql.query(`DELETE FROM transfer WHERE id = $1`, [vanishing])).rowCount).toBe(1);
    await transactionsSql.query("COMMIT");
    await deleteFromStream("FRAUD", (event) => event.type === "fraud.check.requested" && event.data.transferId === vanishing);
    await stack.restart("fraud");
    const finished = [transfers.completing, transfers.fraudulent, transfers.returning];
    await waitUntil(
      async () => (await statusesOf(finished)).every((status) => status === "COMPLETED" || status === "FAILED"),
      "the other sagas to end",
    );
    expect(await statusOf(transfers.fraudulent)).toBe("FAILED");
    // The same crash after a saga completed: money moved, and the transfer's record is gone.
    const completed = transfers.completing;
    await transactionsSql.query(`DELETE FROM transfer_status_change WHERE transfer_id = $1`, [completed]);
    await transactionsSql.query(`DELETE FROM transfer WHERE id = $1`, [completed]);
    expect(await journalOf(vanishing)).toEqual([{ kind: "DEBIT", amount: "-1000" }]);
    await sleep(GRACE_MS + 200);

    // Report only: exactly the two losses, nothing about the correct history around them.
    const report = await run();
    expect(report.findings.map((finding) => [finding.code, finding.transferId]).sort()).toEqual(
      [
        ["DEBIT_WITHOUT_TRANSFER", vanishing],
        ["MOVEMENTS_WITHOUT_TRANSFER", completed],
      ].sort(),
    );
    expect(about(report, vanishing)[0]).toMatchObject({
      details: { accountId: alice.accountId, amountMinor: "1000" },
      repair: { kind: "refund", accountId: alice.accountId, amountMinor: 1_000n },
    });
    expect(about(report, completed)[0]!.repair).toBeUndefined();
    expect(report.unresolved).toBe(2);
    // The whole history read two rows at a time (every query pages): the verdict is the same as
    // the reading of what changed since the last run.
    const paged = await run(false, 2);
    expect([report.full, paged.full]).toEqual([false, true]);
    expect(paged.findings.map((finding) => [finding.code, finding.transferId]).sort()).toEqual(
      report.findings.map((finding) => [finding.code, finding.transferId]).sort(),
    );

    // The operator command says the same, one line per finding, and fails while findings are left.
    const command = await runCommand(["--grace-seconds", String(GRACE_MS / 1000)]);
    expect(command.code).toBe(1);
    expect(command.stdout).toMatch(
      new RegExp(
        `^DEBIT_WITHOUT_TRANSFER transfer=${vanishing} .*accountId=${alice.accountId} amountMinor=1000 .*\\[repairable with --repair\\]$`,
        "m",
      ),
    );
    expect(command.stdout).toMatch(new RegExp(`^MOVEMENTS_WITHOUT_TRANSFER transfer=${completed} .*\\[needs a person\\]$`, "m"));
    const json = JSON.parse((await runCommand(["--grace-seconds", String(GRACE_MS / 1000), "--json"])).stdout) as {
      findings: unknown[];
      unresolved: number;
    };
    expect(json).toMatchObject({
      unresolved: 2,
      findings: expect.arrayContaining([expect.objectContaining({ code: "DEBIT_WITHOUT_TRANSFER", transferId: vanishing })]),
    });
    expect(await journalOf(vanishing)).toEqual([{ kind: "DEBIT", amount: "-1000" }]); // reporting changed nothing

    const aliceBefore = await balanceOf(alice);
    const repaired = await run(true);
    expect(about(repaired, vanishing)[0]!.repairOutcome).toMatchObject({ status: "repaired" });
    expect(about(repaired, completed)[0]!.repairOutcome).toBeUndefined();
    expect(repaired.unresolved).toBe(1);
    await waitUntil(async () => (await journalOf(vanishing)).length === 2, "the refund in accounts' journal");
    expect(await journalOf(vanishing)).toEqual([
      { kind: "DEBIT", amount: "-1000" },
      { kind: "REFUND", amount: "1000" },
    ]);
    expect(await balanceOf(alice)).toBe(aliceBefore + 1_000n);
    const request = (
      await transactionsSql.query(
        `SELECT payload FROM outbox_event WHERE type = 'transaction.refund.requested' AND payload->'data'->>'transferId' = $1`,
        [vanishing],
      )
    ).rows;
    expect(request).toHaveLength(1);
    const debited = (
      await accountsSql.query(`SELECT payload FROM outbox_event WHERE type = 'account.debited' AND payload->'data'->>'transferId' = $1`, [
        vanishing,
      ])
    ).rows[0].payload;
    // The refund joins the debit's story: same correlation id, caused by the debit event.
    expect(request[0].payload).toMatchObject({
      correlationId: debited.correlationId,
      causationId: debited.id,
      data: { reason: RECONCILIATION_REFUND_REASON, amountMinor: "1000" },
    });

    // Twice more, at once: the refund is settled, nothing is asked or moved again.
    await sleep(GRACE_MS + 200);
    const [again, concurrently] = await Promise.all([run(true), run(true)]);
    for (const later of [again, concurrently]) {
      expect(about(later, vanishing)).toEqual([]);
      expect(about(later, completed).map((finding) => finding.code)).toEqual(["MOVEMENTS_WITHOUT_TRANSFER"]);
    }
    // Even a second refund request that reaches accounts (an older tool, a person) refunds nothing:
    // accounts decides a transfer's refund once (saga_decision).
    const extra = createEvent(
      "transaction.refund.requested",
      { transferId: vanishing, fromAccountId: alice.accountId, amountMinor: "1000", reason: "asked again by hand" },
      undefined,
    );
    await appendToOutbox(sqlExecutor(transactionsSql), extra);
    await waitUntil(
      async () =>
        (await accountsSql.query(`SELECT 1 FROM processed_event WHERE consumer = 'accounts-saga' AND event_id = $1`, [extra.id]))
          .rowCount === 1,
      "accounts to handle the extra refund request",
    );
    expect(await journalOf(vanishing)).toHaveLength(2);
    expect(await balanceOf(alice)).toBe(aliceBefore + 1_000n);
    const refundRequests = await transactionsSql.query(
      `SELECT 1 FROM outbox_event WHERE type = 'transaction.refund.requested' AND payload->'data'->>'transferId' = $1`,
      [vanishing],
    );
    expect(refundRequests.rowCount).toBe(2); // the reconciliation's one and the hand-made one
  });

  it("finds an event the audit log lost, republishes it, and no consumer applies it twice", async () => {
    const returning = transfers.returning;
    expect(await statusOf(returning)).toBe("COMPLETED");
    // A run judges only events older than the grace period: the previous test's last events (the
    // extra refund request and accounts' answer) are judged once it has passed. Killed with them
    // still unaudited, audit would get them back only after ack_wait (30 s), or this test's pull
    // below would take and ack one for good (a CI run under load failed so).
    await sleep(GRACE_MS + 200);
    await waitUntil(
      async () => (await run()).findings.every((finding) => finding.eventId === undefined),
      "audit to hold every event so far",
    );
    // The crash: audit acked an event whose append was undone. Audit is stopped, a saga command
    // goes out (a resend of a credit, which accounts answers again from its decision), and the
    // message is acked on audit's durable consumer as audit would have before the crash.
    await stack.processes.get("audit")!.kill();
    // Until JetStream lets go of the dead process's pull requests (at most their 5 s expiry), it
    // may hand them the next message, which then waits out ack_wait (30 s) before this test can
    // take it: the test once took 33 s so.
    await waitUntil(
      async () => (await nats.jsm.consumers.info("TRANSACTIONS", "audit-transactions")).num_waiting === 0,
      "audit's pull requests to end with its process",
    );
    const correlationId = `reconcile-${randomUUID()}`;
    const lost = createEvent(
      "transaction.credit.requested",
      { transferId: returning, toAccountId: alice.accountId, amountMinor: "3000" },
      { correlationId, actor: {} },
    );
    await appendToOutbox(sqlExecutor(transactionsSql), lost);
    const answersTo = async (eventId: string) =>
      (await accountsSql.query(`SELECT 1 FROM outbox_event WHERE type = 'account.credited' AND payload->>'causationId' = $1`, [eventId]))
        .rowCount;
    await waitUntil(async () => (await answersTo(lost.id)) === 1, "accounts to answer the command");
    const auditConsumer = await nats.js.consumers.get("TRANSACTIONS", "audit-transactions");
    for (;;) {
      const message = await auditConsumer.next({ expires: 45_000 });
      expect(message, "the lost event on audit's consumer").toBeTruthy();
      message!.ack();
      if ((message!.json() as { id: string }).id === lost.id) break;
    }
    await stack.restart("audit");
    const inAudit = async (eventId: string) =>
      (await auditSql.query(`SELECT 1 FROM audit_record WHERE event_id = $1`, [eventId])).rowCount === 1;
    await sleep(GRACE_MS + 200);

    // Events written while audit was down reach it after its restart; only the lost one stays missing.
    const report = await waitUntil(async () => {
      const current = await run();
      return current.findings.filter((finding) => finding.eventId !== undefined).length === 1 && current;
    }, "a report with only the lost event");
    expect(about(report, lost.id)).toMatchObject([
      { code: "EVENT_MISSING_FROM_AUDIT", service: "transactions", details: { type: "transaction.credit.requested" } },
    ]);
    expect(await inAudit(lost.id)).toBe(false);

    const repaired = await run(true);
    expect(about(repaired, lost.id)[0]!.repairOutcome).toMatchObject({
      status: "repaired",
      detail: expect.stringContaining(`${lost.id}:reconcile:`),
    });
    await waitUntil(() => inAudit(lost.id), "the republished event in the audit log");
    // Accounts had applied it already: the republished copy is recognised by its event id.
    const { state } = await nats.jsm.streams.info("TRANSACTIONS");
    await waitUntil(
      async () => (await nats.jsm.consumers.info("TRANSACTIONS", "accounts-credits")).ack_floor.stream_seq >= state.last_seq,
      "accounts to take the republished copy",
    );
    expect(await answersTo(lost.id)).toBe(1);

    const trail = await stack.graphql<{ auditLog: Array<{ id: string; type: string }> }>(
      `query($c: String) { auditLog(correlationId: $c) { id type } }`,
      { c: correlationId },
      { authorization: `Bearer ${admin}` },
    );
    expect(trail.data!.auditLog.map((record) => record.id)).toContain(lost.id);
    const verification = await stack.graphql<{ verifyAuditChain: { valid: boolean } }>(
      `{ verifyAuditChain { valid } }`,
      {},
      { authorization: `Bearer ${admin}` },
    );
    expect(verification.data!.verifyAuditChain.valid).toBe(true);
    await sleep(GRACE_MS + 200);
    expect(about(await run(), lost.id)).toEqual([]);
  });

  it("finds an event JetStream lost after acknowledging it (deleted from the stream by hand) and publishes it again", async () => {
    // The loss R1 streams risk (a machine crash before the stream file was synced) or a purge by
    // mistake: the outbox row is marked published, accounts consumed it, audit never got it.
    await stack.processes.get("audit")!.kill();
    const correlationId = `jetstream-lost-${randomUUID()}`;
    const lost = createEvent(
      "transaction.credit.requested",
      { transferId: transfers.returning, toAccountId: alice.accountId, amountMinor: "3000" },
      { correlationId, actor: {} },
    );
    await appendToOutbox(sqlExecutor(transactionsSql), lost);
    const answersTo = async (eventId: string) =>
      (await accountsSql.query(`SELECT 1 FROM outbox_event WHERE type = 'account.credited' AND payload->>'causationId' = $1`, [eventId]))
        .rowCount;
    await waitUntil(async () => (await answersTo(lost.id)) === 1, "accounts to answer the command");
    const published = await transactionsSql.query(`SELECT published_at FROM outbox_event WHERE id = $1`, [lost.id]);
    expect(published.rows[0].published_at).not.toBeNull();
    const stored = (await nats.jsm.streams.getMessage("TRANSACTIONS", { last_by_subj: "transaction.credit.requested" }))!;
    expect((stored.json() as { id: string }).id).toBe(lost.id);
    await nats.jsm.streams.deleteMessage("TRANSACTIONS", stored.seq);
    expect(await nats.jsm.streams.getMessage("TRANSACTIONS", { seq: stored.seq }).catch(() => null)).toBeNull();
    await stack.restart("audit");
    await sleep(GRACE_MS + 200);

    const inAudit = async (eventId: string) =>
      (await auditSql.query(`SELECT 1 FROM audit_record WHERE event_id = $1`, [eventId])).rowCount === 1;
    const report = await waitUntil(async () => {
      const current = await run();
      return current.findings.filter((finding) => finding.eventId !== undefined).length === 1 && current;
    }, "a report with only the event the stream lost");
    expect(about(report, lost.id)).toMatchObject([
      { code: "EVENT_MISSING_FROM_AUDIT", service: "transactions", details: { type: "transaction.credit.requested" } },
    ]);
    expect(await inAudit(lost.id)).toBe(false);

    const repaired = await run(true);
    expect(about(repaired, lost.id)[0]!.repairOutcome).toMatchObject({ status: "repaired" });
    await waitUntil(() => inAudit(lost.id), "the republished event in the audit log");
    const again = (await nats.jsm.streams.getMessage("TRANSACTIONS", { last_by_subj: "transaction.credit.requested" }))!;
    expect((again.json() as { id: string }).id).toBe(lost.id);
    // Accounts had applied it before the loss: the new copy changes nothing there.
    const { state } = await nats.jsm.streams.info("TRANSACTIONS");
    await waitUntil(
      async () => (await nats.jsm.consumers.info("TRANSACTIONS", "accounts-credits")).ack_floor.stream_seq >= state.last_seq,
      "accounts to take the new copy",
    );
    expect(await answersTo(lost.id)).toBe(1);
    const verification = await stack.graphql<{ verifyAuditChain: { valid: boolean } }>(
      `{ verifyAuditChain { valid } }`,
      {},
      { authorization: `Bearer ${admin}` },
    );
    expect(verification.data!.verifyAuditChain.valid).toBe(true);
    await sleep(GRACE_MS + 200);
    expect(about(await run(), lost.id)).toEqual([]);
  });

  it("with --prune, deletes the outbox rows the audit log holds and keeps what a later run still needs", async () => {
    // A row marked published whose message never reached the stream: missing from audit, kept.
    const unaudited = createEvent(
      "account.created",
      {
        accountId: randomUUID(),
        userId: randomUUID(),
        type: "SAVINGS",
        currency: "EUR",
        maskedNumber: "•••• 0000",
        numberBlindIndex: "0".repeat(64),
      },
      undefined,
    );
    await accountsSql.query(
      `INSERT INTO outbox_event (id, subject, type, payload, published_at) VALUES ($1::uuid, $2, $2, $3::jsonb, now())`,
      [unaudited.id, unaudited.type, JSON.stringify(unaudited)],
    );
    await sleep(GRACE_MS + 200);
    const verdict = (report: ReconcileReport) =>
      report.findings.map((finding) => `${finding.code} ${finding.transferId ?? finding.eventId}`).sort();
    const before = await waitUntil(async () => {
      const current = await run();
      return current.findings.filter((finding) => finding.eventId !== undefined).length === 1 && current;
    }, "audit to hold every event but the unaudited one");
    expect(about(before, unaudited.id).map((finding) => finding.code)).toEqual(["EVENT_MISSING_FROM_AUDIT"]);
    const outboxes = await connectTo(OUTBOX_SERVICES);
    const idsOf = async (client: pg.Client) =>
      (
        await client.query<{ id: string }>(`SELECT id::text FROM outbox_event WHERE created_at < $1 ORDER BY seq`, [before.startedAt])
      ).rows.map((row) => row.id);
    try {
      const held = Object.fromEntries(await Promise.all(OUTBOX_SERVICES.map(async (service) => [service, await idsOf(outboxes[service])])));
      const total = Object.values(held).flat().length;

      // Two rows a page: every cursor is used (a text-ordered page once skipped rows 2 to 9).
      const pruning = await reconcile({ databaseUrls: stack.databaseUrls, graceMs: GRACE_MS, prune: true, pageSize: 2, logger });
      expect(verdict(pruning)).toEqual(verdict(before));
      const pruned = prunedRows(pruning);
      const left = Object.fromEntries(await Promise.all(OUTBOX_SERVICES.map(async (service) => [service, await idsOf(outboxes[service])])));
      expect(pruned).toBe(total - Object.values(left).flat().length);
      expect(pruned).toBeGreaterThan(20); // accounts, deposits and five sagas' events
      // The saga's three services wrote (auth and audit wrote nothing here: tokens are minted, no DLQ replay).
      for (const service of ["accounts", "transactions", "fraud"] as const) expect(held[service]!.length, service).toBeGreaterThan(0);

      // What is left, older than the run, is exactly what a later run needs: the unaudited row, the
      // reconciliation's own refund request, and the debit of the transfer transactions lost whose
      // finding is still open (a refund of it would join the debit's correlation id). The refunded
      // one is settled: its debit went (the audit log holds it).
      const request = await transactionsSql.query(
        `SELECT id::text FROM outbox_event WHERE type = 'transaction.refund.requested' AND payload->'data'->>'reason' = $1`,
        [RECONCILIATION_REFUND_REASON],
      );
      const debits = await accountsSql.query(
        `SELECT id::text FROM outbox_event WHERE type = 'account.debited' AND payload->'data'->>'transferId' = ANY($1::text[])`,
        [[transfers.vanishing, transfers.completing]],
      );
      expect(request.rows).toHaveLength(1);
      expect(debits.rows).toHaveLength(1);
      expect(Object.values(left).flat().sort()).toEqual([unaudited.id, request.rows[0].id, ...debits.rows.map((row) => row.id)].sort());
      expect(left.accounts).toContain(unaudited.id);

      // The verdicts are the same without the pruned copies: the refunded transfer stays settled
      // (its request is still recognised), nothing is asked again, and the next run prunes nothing.
      const after = await run();
      expect(verdict(after)).toEqual(verdict(before));
      expect(about(after, transfers.vanishing)).toEqual([]);
      // The operator command, as the CronJob runs it: the findings are still there (exit 1), and
      // it says what it pruned.
      const command = await runCommand(["--prune", "--grace-seconds", String(GRACE_MS / 1000)]);
      expect(command.code).toBe(1);
      expect(command.stdout).toMatch(/; pruned 0 outbox row\(s\) the audit log holds/);
    } finally {
      await Promise.all(Object.values(outboxes).map((client) => client.end()));
    }
  });

  it("reads only what changed since its checkpoint and what it left open; --full reads the whole history", async () => {
    const { completing, returning } = transfers;
    const transferCount = async () => (await transactionsSql.query(`SELECT count(*)::int AS n FROM transfer`)).rows[0].n as number;
    const checkpoint = async () => (await loadMoneyCheckpoint(transactionsSql))!;
    // Everything so far is older than where the next run starts reading.
    await sleep(GRACE_MS + CHECKPOINT_OVERLAP_MS + 500);
    const open = (await checkpoint()).openTransferIds;
    expect(open).toContain(completing); // MOVEMENTS_WITHOUT_TRANSFER, found in an earlier test
    const quiet = await run();
    expect(quiet.full).toBe(false);
    // Nothing changed: it judged exactly the transfers left open, and still reports the lost record
    // whose movements are older than where it read from.
    expect(quiet.transfersJudged).toBe(open.length);
    const journalTimes = await accountsSql.query<{ at: Date }>(`SELECT created_at AS at FROM journal_entry WHERE transfer_id = $1`, [
      completing,
    ]);
    expect(journalTimes.rows.every((row) => row.at < quiet.since!)).toBe(true);
    expect(about(quiet, completing).map((finding) => finding.code)).toEqual(["MOVEMENTS_WITHOUT_TRANSFER"]);

    // Two new transfers: read because their statuses changed and money moved.
    const sent = [await send(alice, bob, 700), await send(bob, alice, 800)];
    await waitUntil(async () => (await statusesOf(sent)).every((status) => status === "COMPLETED"), "the new transfers");
    await sleep(GRACE_MS + 200);
    const fresh = await run();
    expect(fresh.transfersJudged).toBe(open.length + 2);
    for (const id of sent) expect(about(fresh, id)).toEqual([]);
    expect(await transferCount()).toBeGreaterThan(fresh.transfersJudged);

    // A settled transfer altered by hand (no saga touched it) is not among the changes: only a
    // full reading sees it, and then it is carried as open until it is put right.
    await transactionsSql.query(`UPDATE transfer SET amount_minor = amount_minor + 1 WHERE id = $1`, [returning]);
    try {
      expect(about(await run(), returning)).toEqual([]);
      const full = await run(false, 2);
      expect(full.full).toBe(true);
      expect(full.transfersJudged).toBeGreaterThanOrEqual(await transferCount());
      expect(about(full, returning).map((finding) => finding.code)).toEqual(["AMOUNT_MISMATCH", "AMOUNT_MISMATCH"]);
      expect((await checkpoint()).openTransferIds).toContain(returning);
      expect((await checkpoint()).fullAt).toEqual(full.startedAt);
      expect(about(await run(), returning).map((finding) => finding.code)).toEqual(["AMOUNT_MISMATCH", "AMOUNT_MISMATCH"]);
    } finally {
      await transactionsSql.query(`UPDATE transfer SET amount_minor = amount_minor - 1 WHERE id = $1`, [returning]);
    }
    const mended = await run();
    expect(about(mended, returning)).toEqual([]);
    expect((await checkpoint()).openTransferIds).not.toContain(returning);

    // The operator command says which reading it did.
    const grace = ["--grace-seconds", String(GRACE_MS / 1000)];
    expect((await runCommand(grace)).stdout).toMatch(/; money: \d+ transfer\(s\) changed since \S+ or left open \(--full reads all\)/);
    expect((await runCommand(["--full", ...grace])).stdout).toMatch(/; money: the whole history, \d+ transfer\(s\)/);
  });

  it("with --prune, forgets the events consumers handled before the streams' age limit; a copy published after that changes nothing", async () => {
    const paid = await send(alice, bob, 900);
    await waitUntil(async () => (await statusOf(paid)) === "COMPLETED", "the transfer");
    const services = ["auth", "accounts", "transactions", "fraud"] as const;
    const clients = await connectTo(services);
    /** Rows of events made and handled before `split` (uuid v7 ids begin with their time). */
    const rowsBefore = async (client: pg.Client, split: Date) =>
      (
        await client.query(`SELECT count(*)::int AS n FROM processed_event WHERE event_id < $1::uuid AND processed_at < $2`, [
          uuidV7Floor(split.getTime()),
          split,
        ])
      ).rows[0].n as number;
    const handled = async (client: pg.Client, eventId: string) =>
      (await client.query(`SELECT consumer FROM processed_event WHERE event_id = $1 ORDER BY consumer`, [eventId])).rows.map(
        (row) => row.consumer as string,
      );
    try {
      // Every consumer has handled the paid transfer (auth's notice of it is the last); then a
      // moment that stands for "a week and a day ago"; then a recent transfer.
      const completed = (
        await transactionsSql.query(
          `SELECT id::text FROM outbox_event WHERE type = 'transaction.completed' AND payload->'data'->>'transferId' = $1`,
          [paid],
        )
      ).rows[0].id as string;
      await waitUntil(async () => (await handled(clients.auth, completed)).length === 1, "auth to record the completed transfer's notice");
      const split = new Date();
      await sleep(5);
      // A consumer whose events span days with gaps (each statement deletes ten minutes of event
      // time, and a gap is jumped over), and an old event handled only now (republished lately): kept.
      const idAt = (ms: number) => uuidV7Floor(ms).slice(0, 24) + randomUUID().replaceAll("-", "").slice(0, 12);
      const hour = 3_600_000;
      const spread = [72 * hour, 48 * hour + 300_000, 48 * hour, hour].map((ago) => idAt(split.getTime() - ago));
      const lateOld = idAt(split.getTime() - 24 * hour);
      await accountsSql.query(
        `INSERT INTO processed_event (consumer, event_id, processed_at)
         SELECT 'reconcile-test', id, $2::timestamptz FROM unnest($1::uuid[]) AS id UNION ALL SELECT 'reconcile-test', $3::uuid, now()`,
        [spread, new Date(split.getTime() - 60_000), lateOld],
      );
      const old = Object.fromEntries(
        await Promise.all(services.map(async (service) => [service, await rowsBefore(clients[service], split)])),
      ) as Record<(typeof services)[number], number>;
      for (const service of services) expect(old[service], service).toBeGreaterThan(0);
      const recent = await send(bob, alice, 100);
      await waitUntil(async () => (await statusOf(recent)) === "COMPLETED", "the recent transfer");
      const total = async (client: pg.Client) => (await client.query(`SELECT count(*)::int AS n FROM processed_event`)).rows[0].n as number;
      await waitUntil(async () => (await total(clients.accounts)) > old.accounts, "accounts to record the recent transfer's events");

      // What the CLI passes is now less a week and a day (processedEventKeepMs(168)); the split
      // stands for it here.
      expect(processedEventKeepMs(168)).toBe(192 * 3_600_000);
      const pruning = await reconcile({
        databaseUrls: stack.databaseUrls,
        graceMs: GRACE_MS,
        prune: true,
        processedEventsBefore: split,
        logger,
      });
      expect(pruning.processedBefore).toEqual(split);
      expect(pruning.prunedProcessed).toEqual(old);
      expect(prunedProcessedRows(pruning)).toBe(Object.values(old).reduce((sum, count) => sum + count, 0));
      for (const service of services) expect(await rowsBefore(clients[service], split), service).toBe(0);
      expect(await total(clients.accounts)).toBeGreaterThan(0);
      expect(await handled(clients.auth, completed)).toEqual([]);
      for (const id of spread) expect(await handled(accountsSql, id)).toEqual([]);
      expect(await handled(accountsSql, lateOld)).toEqual(["reconcile-test"]);

      // The debit command and the passed verdict of the paid transfer, published again as a dead
      // letter's replay would: accounts no longer has them in processed_event, and its saga
      // decisions still take them once. It answers with its first decisions; the transfer stays
      // COMPLETED and no money moves.
      const balances = [await balanceOf(alice), await balanceOf(bob)];
      const journal = await journalOf(paid);
      expect(journal.map((entry) => entry.kind)).toEqual(["DEBIT", "CREDIT"]);
      const history = async () =>
        (await transactionsSql.query(`SELECT count(*)::int AS n FROM transfer_status_change WHERE transfer_id = $1`, [paid])).rows[0].n;
      const statusChanges = await history();
      const command = (
        await transactionsSql.query(
          `SELECT subject, payload FROM outbox_event WHERE type = 'transaction.initiated' AND payload->'data'->>'transferId' = $1`,
          [paid],
        )
      ).rows[0];
      const verdict = (
        await clients.fraud.query(
          `SELECT subject, payload FROM outbox_event WHERE type = 'fraud.check.completed' AND payload->'data'->>'transferId' = $1`,
          [paid],
        )
      ).rows[0];
      expect(verdict.payload.data.passed).toBe(true);
      for (const copy of [command, verdict]) expect(await handled(accountsSql, copy.payload.id)).toEqual([]);
      const answers = async (type: string) =>
        (
          await accountsSql.query(
            `SELECT id::text FROM outbox_event WHERE type = $1 AND payload->'data'->>'transferId' = $2 ORDER BY seq`,
            [type, paid],
          )
        ).rows;
      const [debitsBefore, creditsBefore] = [(await answers("account.debited")).length, (await answers("account.credited")).length];
      for (const copy of [command, verdict]) {
        await nats.js.publish(copy.subject, JSON.stringify(copy.payload), {
          msgID: `${copy.payload.id}:replay-test`,
          headers: eventHeaders(parseEvent(copy.payload)),
        });
      }
      await waitUntil(
        async () =>
          (await handled(accountsSql, command.payload.id)).includes("accounts-saga") &&
          (await handled(accountsSql, verdict.payload.id)).includes("accounts-verdicts"),
        "accounts to take both copies again",
      );
      const [debitsAfter, creditsAfter] = [await answers("account.debited"), await answers("account.credited")];
      expect([debitsAfter.length, creditsAfter.length]).toEqual([debitsBefore + 1, creditsBefore + 1]);
      // Transactions takes the repeated answers and ignores them: the transfer is settled.
      await waitUntil(
        async () =>
          (await handled(transactionsSql, debitsAfter.at(-1)!.id)).length === 1 &&
          (await handled(transactionsSql, creditsAfter.at(-1)!.id)).length === 1,
        "transactions to take the repeated answers",
      );
      expect(await statusOf(paid)).toBe("COMPLETED");
      expect(await history()).toBe(statusChanges);
      expect(await journalOf(paid)).toEqual(journal);
      expect([await balanceOf(alice), await balanceOf(bob)]).toEqual(balances);

      // The operator command: by default as long as the services' streams keep a message, and a
      // day; with streams that keep everything, nothing; a flag sets it.
      const grace = ["--grace-seconds", String(GRACE_MS / 1000)];
      expect((await runCommand(["--prune", ...grace])).stdout).toMatch(/and 0 processed-event row\(s\) from before \S+/);
      expect((await runCommand(["--prune", ...grace], { NATS_STREAM_MAX_AGE_HOURS: "0" })).stdout).toMatch(/\(processed events all kept\)/);
      expect((await runCommand(["--prune", "--keep-processed-hours", "1", ...grace])).stdout).toMatch(/and \d+ processed-event row\(s\)/);
      expect((await runCommand(["--prune", "--keep-processed-hours", "0", ...grace])).code).toBe(2);
    } finally {
      await Promise.all(Object.values(clients).map((client) => client.end()));
    }
  });

  async function runCommand(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number; stdout: string }> {
    const env = {
      ...process.env,
      ...extraEnv,
      NATS_URL: stack.nats.url,
      ...Object.fromEntries(Object.entries(stack.databaseUrls).map(([service, url]) => [`${service.toUpperCase()}_DATABASE_URL`, url])),
    };
    try {
      const { stdout } = await promisify(execFile)(process.execPath, ["scripts/reconcile.ts", ...args], {
        cwd: REPO_ROOT,
        env,
      });
      return { code: 0, stdout };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      if (typeof failed.code !== "number") throw error;
      return { code: failed.code, stdout: failed.stdout ?? "" };
    }
  }
});
