/**
 * The transfer saga through the gateway, with every service running: balances move exactly, the
 * subscriber sees each status in order, insufficient funds are rejected with nothing moved, and a
 * failed fraud check refunds the debit. The receiver sees a transfer once it is COMPLETED, without
 * its reasons or fraud check; anyone else sees nothing. An overdue step's command is sent again
 * only when it is no longer waiting in a queue.
 */
import { randomUUID } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { natsServers } from "@vaultpay/events";
import { createClient, type Client } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import {
  fraudOnlyOnAmount,
  mintAccessToken,
  parsePrometheusText,
  startTestStack,
  valueOf,
  waitUntil,
  type TestStack,
} from "@vaultpay/testing";

type Stack = TestStack & { teardown: () => Promise<void> };

interface Customer {
  userId: string;
  token: string;
  deviceId: string;
  accountId: string;
  number: string;
}

describe("transfer saga", () => {
  let stack: Stack;
  let admin: string;
  const clients: Client[] = [];

  beforeAll(async () => {
    stack = await startTestStack({
      env: {
        SAGA_STEP_TIMEOUT_MS: "3000",
        // A transfer of more than 50 000.00 fails the fraud check in this stack.
        ...fraudOnlyOnAmount(5_000_000n),
      },
    });
    admin = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" });
  });
  afterAll(async () => {
    for (const client of clients) await client.dispose();
    await stack?.teardown();
  });

  async function call<T>(token: string, query: string, variables: Record<string, unknown> = {}, deviceId = "device-1") {
    const result = await stack.graphql<T>(query, variables, { authorization: `Bearer ${token}`, "x-device-id": deviceId });
    if (result.errors) throw new Error(JSON.stringify(result.errors));
    return result.data!;
  }

  async function customer(depositMinor: string): Promise<Customer> {
    const userId = randomUUID();
    const deviceId = `device-${userId.slice(0, 8)}`;
    const token = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId, role: "CUSTOMER", deviceId });
    const { openAccount } = await call<{ openAccount: { id: string; number: string } }>(
      token,
      `mutation { openAccount(type: SAVINGS) { id number } }`,
      {},
      deviceId,
    );
    if (depositMinor !== "0") {
      await call(
        admin,
        `mutation($id: ID!, $amount: MinorUnits!, $key: String!) { depositFunds(accountId: $id, amountMinor: $amount, idempotencyKey: $key) { id } }`,
        {
          id: openAccount.id,
          amount: depositMinor,
          key: randomUUID(),
        },
      );
    }
    return { userId, token, deviceId, accountId: openAccount.id, number: openAccount.number };
  }

  async function balance(who: Customer): Promise<string> {
    const { account } = await call<{ account: { balance: { minor: string } } }>(
      who.token,
      `query($id: ID!) { account(id: $id) { balance { minor } } }`,
      { id: who.accountId },
      who.deviceId,
    );
    return account.balance.minor;
  }

  /** Starts a transfer once the transactions service has learned of the destination account. */
  async function transfer(
    from: Customer,
    to: Customer,
    amountMinor: string,
    idempotencyKey: string = randomUUID(),
    correlationId: string = randomUUID(),
  ) {
    return waitUntil(async () => {
      const result = await stack.graphql<{ initiateTransfer: { id: string; status: string } }>(
        `mutation($from: ID!, $to: String!, $amount: MinorUnits!, $key: String!) {
             initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: $amount, idempotencyKey: $key) { id status }
           }`,
        { from: from.accountId, to: to.number, amount: amountMinor, key: idempotencyKey },
        { authorization: `Bearer ${from.token}`, "x-device-id": from.deviceId, "x-correlation-id": correlationId },
      );
      if (result.errors?.[0]?.extensions?.code === "NOT_FOUND") return undefined; // directory not caught up yet
      if (result.errors) throw new Error(JSON.stringify(result.errors));
      return result.data!.initiateTransfer;
    }, "the transfer to be accepted");
  }

  /** Collects transferStatusChanged payloads until a terminal status. */
  function follow(who: Customer, transferId: string, fields = "status failureReason amount { minor } fromAccount { id }") {
    const client = createClient({
      url: stack.gatewayUrl.replace(/^http/, "ws"),
      connectionParams: { authorization: `Bearer ${who.token}` },
      lazy: true,
    });
    clients.push(client);
    const seen: Array<{ status: string; failureReason: string | null; amount: { minor: string }; fromAccount: { id: string } }> = [];
    const done = new Promise<typeof seen>((resolve, reject) => {
      client.subscribe<{ transferStatusChanged: (typeof seen)[number] }>(
        {
          query: `subscription($id: ID!) { transferStatusChanged(id: $id) { ${fields} } }`,
          variables: { id: transferId },
        },
        {
          next: (message) => {
            if (message.errors) return reject(new Error(JSON.stringify(message.errors)));
            seen.push(message.data!.transferStatusChanged);
          },
          error: (error) =>
            reject(
              error instanceof Error
                ? error
                : new Error(
                    `socket closed: ${(error as { code?: number }).code} ${(error as { reason?: string }).reason ?? JSON.stringify(error)}`,
                  ),
            ),
          complete: () => resolve(seen),
        },
      );
    });
    return done;
  }

  it("moves money exactly and pushes PENDING, DEBITED, COMPLETED to the subscriber", async () => {
    const [alice, bob] = await Promise.all([customer("1000000"), customer("0")]);
    const correlationId = `transfer-story-${randomUUID()}`;
    const started = await transfer(alice, bob, "250000", randomUUID(), correlationId);
    expect(started.status).toBe("PENDING");
    const statuses = await follow(alice, started.id);
    expect(statuses.map((s) => s.status)).toEqual(["PENDING", "DEBITED", "COMPLETED"]);
    expect(statuses.every((s) => s.amount.minor === "250000" && s.fromAccount.id === alice.accountId)).toBe(true);
    expect(await balance(alice)).toBe("750000");
    expect(await balance(bob)).toBe("250000");

    const { myTransfers } = await call<{ myTransfers: { edges: Array<{ node: { id: string; status: string } }> } }>(
      alice.token,
      `{ myTransfers(first: 5) { edges { node { id status } } } }`,
    );
    expect(myTransfers.edges[0]?.node).toEqual({ id: started.id, status: "COMPLETED" });
    // The request's correlation id follows the transfer through every service: the audit log tells
    // the whole story under it. (Its chain order is the order the audit consumers appended in; the
    // story's order is when each service acted, so compare by occurredAt.)
    const expectedStory = [
      "transaction.initiated",
      "account.debited",
      "fraud.check.requested",
      "fraud.check.completed",
      "account.credited",
      "transaction.completed",
    ];
    const story = await waitUntil(async () => {
      const { auditLog } = await call<{ auditLog: Array<{ seq: number; type: string; correlationId: string; occurredAt: string }> }>(
        admin,
        `query($id: String) { auditLog(correlationId: $id, first: 100) { seq type correlationId occurredAt } }`,
        { id: correlationId },
      );
      const types = auditLog.map((record) => record.type);
      return expectedStory.every((type) => types.includes(type)) && auditLog;
    }, "the transfer's audit trail");
    const order = [...story]
      .sort((a, b) => a.occurredAt.localeCompare(b.occurredAt))
      .map((record) => record.type)
      .filter((type) => expectedStory.includes(type));
    expect(order).toEqual(expectedStory);
    // Accounts credits on the passed verdict itself: no credit command goes through transactions.
    expect(story.some((record) => record.type === "transaction.credit.requested")).toBe(false);
    expect(story.filter((record) => record.type === "transaction.status.changed")).toHaveLength(3);
    expect(story.some((record) => record.type === "gateway.request")).toBe(true);
    expect(story.every((record) => record.correlationId === correlationId)).toBe(true);

    // The receiver reads the completed transfer as received: the source masked, no reasons, no fraud check.
    const received = await call<{ transfer: Record<string, unknown> }>(
      bob.token,
      `query($id: ID!) { transfer(id: $id) { id status direction fromMaskedNumber toMaskedNumber failureReason fraudCheck { reasons } statusHistory { status reason } } }`,
      { id: started.id },
      bob.deviceId,
    );
    expect(received.transfer).toEqual({
      id: started.id,
      status: "COMPLETED",
      direction: "RECEIVED",
      fromMaskedNumber: expect.stringMatching(new RegExp(`^X+${alice.number.slice(-4)}$`)),
      toMaskedNumber: expect.stringMatching(new RegExp(`^X+${bob.number.slice(-4)}$`)),
      failureReason: null,
      fraudCheck: null,
      statusHistory: ["PENDING", "DEBITED", "COMPLETED"].map((status) => ({ status, reason: null })),
    });
    const history = (token: string, directions: string) =>
      call<{ myTransfers: { edges: Array<{ node: { id: string; direction: string } }> } }>(
        token,
        `{ myTransfers(first: 5, directions: ${directions}) { edges { node { id direction } } } }`,
      );
    expect((await history(bob.token, "[SENT, RECEIVED]")).myTransfers.edges.map((edge) => edge.node)).toEqual([
      { id: started.id, direction: "RECEIVED" },
    ]);
    expect((await history(bob.token, "[SENT]")).myTransfers.edges).toEqual([]);
    expect((await history(alice.token, "[SENT, RECEIVED]")).myTransfers.edges[0]?.node).toEqual({ id: started.id, direction: "SENT" });
    // The source account itself stays its owner's: not even its id reaches the receiver.
    const source = await stack.graphql(
      `query($id: ID!) { transfer(id: $id) { fromAccount { id } } }`,
      { id: started.id },
      {
        authorization: `Bearer ${bob.token}`,
      },
    );
    expect(source.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    // Someone else's transfer looks like none at all.
    const carol = await customer("0");
    const probe = await stack.graphql(
      `query($id: ID!) { transfer(id: $id) { id } }`,
      { id: started.id },
      { authorization: `Bearer ${carol.token}` },
    );
    expect(probe.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    expect((await history(carol.token, "[SENT, RECEIVED]")).myTransfers.edges).toEqual([]);
  });

  it("lets nobody but the sender, and the receiver once it is COMPLETED, subscribe to a transfer", async () => {
    const [alice, bob, carol] = await Promise.all([customer("100000"), customer("0"), customer("0")]);
    const started = await transfer(alice, bob, "1000");
    await expect(follow(carol, started.id)).rejects.toThrow(/NOT_FOUND/);
    const anonymous = createClient({ url: stack.gatewayUrl.replace(/^http/, "ws"), lazy: true, retryAttempts: 0 });
    clients.push(anonymous);
    const refused = await new Promise<unknown>((resolve) => {
      anonymous.subscribe(
        { query: `subscription($id: ID!) { transferStatusChanged(id: $id) { status } }`, variables: { id: started.id } },
        {
          next: () => resolve("got data"),
          error: resolve,
          complete: () => resolve("completed"),
        },
      );
    });
    // graphql-ws closes an unauthenticated connection with 4403 Forbidden.
    expect((refused as { code?: number }).code).toBe(4403);
    await follow(alice, started.id);
    const received = await follow(bob, started.id, "status failureReason fromMaskedNumber");
    expect(received.map((payload) => payload.status)).toEqual(["PENDING", "DEBITED", "COMPLETED"]);
  });

  it("limits one user's open subscription connections, and frees a slot on close", async () => {
    const carol = await customer("0");
    const connect = () =>
      new Promise<{ client: Client; outcome: "connected" | number }>((resolve) => {
        const client = createClient({
          url: stack.gatewayUrl.replace(/^http/, "ws"),
          connectionParams: { authorization: `Bearer ${carol.token}` },
          lazy: false,
          retryAttempts: 0,
          on: {
            connected: () => resolve({ client, outcome: "connected" }),
            closed: (event) => resolve({ client, outcome: (event as { code: number }).code }),
          },
        });
        clients.push(client);
      });
    const opened = [];
    for (let i = 0; i < 10; i++) opened.push(await connect());
    expect(opened.map((c) => c.outcome)).toEqual(Array.from({ length: 10 }, () => "connected"));
    expect((await connect()).outcome).toBe(4403);
    await opened[0]!.client.dispose();
    await waitUntil(async () => (await connect()).outcome === "connected", "a freed slot");
    for (const connection of opened) await connection.client.dispose();
  });

  it("returns the same transfer for a retried request and CONFLICT for a changed body", async () => {
    const [alice, bob] = await Promise.all([customer("100000"), customer("0")]);
    const key = randomUUID();
    const first = await transfer(alice, bob, "1000", key);
    const retry = await transfer(alice, bob, "1000", key);
    expect(retry.id).toBe(first.id);
    // The source's id in upper case names the same account: the same request, not a changed body.
    const shouted = await transfer({ ...alice, accountId: alice.accountId.toUpperCase() }, bob, "1000", key);
    expect(shouted.id).toBe(first.id);
    const changed = await stack.graphql(
      `mutation($from: ID!, $to: String!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: "2000", idempotencyKey: $key) { id } }`,
      { from: alice.accountId, to: bob.number, key },
      { authorization: `Bearer ${alice.token}` },
    );
    expect(changed.errors?.[0]?.extensions?.code).toBe("CONFLICT");
    await follow(alice, first.id);
    expect(await balance(bob)).toBe("1000");
  });

  it("rejects a transfer without funds and moves nothing", async () => {
    const [alice, bob] = await Promise.all([customer("5000"), customer("0")]);
    const started = await transfer(alice, bob, "9000");
    const statuses = await follow(alice, started.id);
    expect(statuses.map((s) => s.status)).toEqual(["PENDING", "REJECTED"]);
    expect(statuses.at(-1)?.failureReason).toBe("Insufficient funds");
    expect(await balance(alice)).toBe("5000");
    expect(await balance(bob)).toBe("0");
  });

  it("fails a transfer the fraud check refuses and refunds the debit", async () => {
    const [alice, bob] = await Promise.all([customer("10000000"), customer("0")]);
    const started = await transfer(alice, bob, "6000000");
    const statuses = await follow(alice, started.id);
    expect(statuses.map((s) => s.status)).toEqual(["PENDING", "DEBITED", "FAILED"]);
    expect(statuses.at(-1)?.failureReason).toMatch(/^The fraud check stopped this transfer: /);
    expect(await balance(alice)).toBe("10000000");
    expect(await balance(bob)).toBe("0");
    // Nothing reached bob, so nothing of it is his to read: not the transfer, nor the fraud check's reasons.
    const probe = await stack.graphql(
      `query($id: ID!) { transfer(id: $id) { failureReason fraudCheck { reasons } } }`,
      { id: started.id },
      {
        authorization: `Bearer ${bob.token}`,
      },
    );
    expect(probe.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    const { myTransfers } = await call<{ myTransfers: { edges: unknown[] } }>(
      bob.token,
      `{ myTransfers(directions: [RECEIVED]) { edges { node { id } } } }`,
    );
    expect(myTransfers.edges).toEqual([]);
  });

  it("does not send a debit waiting for a stopped accounts again, and sends it again once it is lost", async () => {
    const [alice, bob] = await Promise.all([customer("10000"), customer("0")]);
    // A first transfer: transactions' directory knows both accounts before accounts stops.
    const first = await transfer(alice, bob, "1");
    expect((await follow(alice, first.id)).at(-1)?.status).toBe("COMPLETED");
    const transactions = new pg.Client({ connectionString: stack.databaseUrls.transactions });
    await transactions.connect();
    const nc = await connect(natsServers(stack.nats.url));
    let stopped = false;
    try {
      const jsm = await jetstreamManager(nc);
      const deadlines = async (outcome: string) => {
        const text = await (await fetch(stack.urls.transactions.replace(/\/graphql$/, "/metrics"))).text();
        return valueOf(parsePrometheusText(text), "vaultpay_saga_step_deadlines_total", { step: "DEBIT", outcome }) ?? 0;
      };
      const before = { queued: await deadlines("queued"), resent: await deadlines("resent") };
      await stack.processes.get("accounts")!.stop();
      stopped = true;
      const started = await transfer(alice, bob, "2500");
      const stepAttempts = async () =>
        Number(
          (await transactions.query(`SELECT step_attempts FROM transfer WHERE id = $1 AND step = 'DEBIT'`, [started.id])).rows[0]
            ?.step_attempts,
        );
      const debitCommands = async () =>
        (
          await transactions.query<{ id: string }>(
            `SELECT id FROM outbox_event WHERE type = 'transaction.initiated' AND payload->'data'->>'transferId' = $1`,
            [started.id],
          )
        ).rows.map((row) => row.id);

      // Past the first deadline (3 s) the debit still waits in accounts' queue: counted, not sent again.
      await waitUntil(async () => (await stepAttempts()) >= 2, "the first deadline to pass", 15_000);
      const [command] = await debitCommands();
      expect(await debitCommands()).toEqual([command]);

      // The command is lost from the stream (what a NATS crash can do): at the next deadline it goes again.
      const stored = (await jsm.streams.getMessage("TRANSACTIONS", { last_by_subj: "transaction.initiated" }))!;
      expect((stored.json() as { id: string }).id).toBe(command);
      expect(await jsm.streams.deleteMessage("TRANSACTIONS", stored.seq)).toBe(true);
      // (At the next deadline the queues' samples may still show the lost command's wait from
      // before it was deleted, and hold it once more; the one after cannot.)
      await waitUntil(async () => (await debitCommands()).length === 2, "the lost command to be sent again", 30_000);
      expect(await deadlines("queued")).toBeGreaterThanOrEqual(before.queued + 1);
      expect(await deadlines("resent")).toBe(before.resent + 1);

      await stack.restart("accounts");
      stopped = false;
      expect((await follow(alice, started.id)).at(-1)?.status).toBe("COMPLETED");
      expect(await balance(alice)).toBe("7499");
      expect(await balance(bob)).toBe("2501");
    } finally {
      if (stopped) await stack.restart("accounts");
      await nc.close();
      await transactions.end();
    }
  });

  it("refuses bad input with the field named", async () => {
    const alice = await customer("0");
    const bad = await stack.graphql(
      `mutation { initiateTransfer(fromAccountId: "${alice.accountId}", toAccountNumber: "123456789012", amountMinor: "-5", idempotencyKey: "k") { id } }`,
      {},
      { authorization: `Bearer ${alice.token}` },
    );
    expect(bad.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT" });
    const typo = await stack.graphql(
      `mutation { initiateTransfer(fromAccountId: "${alice.accountId}", toAccountNumber: "123456789012", amountMinor: "5", idempotencyKey: "k") { id } }`,
      {},
      { authorization: `Bearer ${alice.token}` },
    );
    expect(typo.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "toAccountNumber" });
  });

  it("reads a page of transfers with histories, fraud checks and accounts in a bounded number of queries", async () => {
    const [alice, bob] = await Promise.all([customer("1000000"), customer("0")]);
    const started = await Promise.all(Array.from({ length: 20 }, (_, i) => transfer(alice, bob, String(100 + i))));
    for (const { id } of started) await follow(alice, id);
    // Reads of the tables behind statusHistory and fraudCheck, as pg_stat_statements counts them
    // (synchronously, unlike the table statistics): one query per transfer would add 20 each.
    const selects = async (service: "transactions" | "fraud", table: string) => {
      const client = new pg.Client({ connectionString: stack.databaseUrls[service] });
      await client.connect();
      try {
        await client.query(`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`);
        const row = await client.query<{ n: string }>(
          `SELECT coalesce(sum(calls), 0)::text AS n FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
           WHERE d.datname = current_database() AND s.query ILIKE 'SELECT%' AND s.query LIKE $1`,
          [`%${table}%`],
        );
        return Number(row.rows[0]!.n);
      } finally {
        await client.end();
      }
    };
    const before = { history: await selects("transactions", "transfer_status_change"), checks: await selects("fraud", "fraud_check") };
    const page = await call<{
      myTransfers: {
        edges: Array<{
          node: { statusHistory: Array<{ status: string }>; fraudCheck: { passed: boolean } | null; fromAccount: { id: string } };
        }>;
      };
    }>(
      alice.token,
      `{ myTransfers(first: 20) { edges { node { statusHistory { status } fraudCheck { passed } fromAccount { id } } } } }`,
      {},
      alice.deviceId,
    );
    expect(page.myTransfers.edges).toHaveLength(20);
    for (const { node } of page.myTransfers.edges) {
      expect(node.statusHistory.map((change) => change.status)).toEqual(["PENDING", "DEBITED", "COMPLETED"]);
      expect(node.fraudCheck).toEqual({ passed: true });
      expect(node.fromAccount.id).toBe(alice.accountId);
    }
    const after = { history: await selects("transactions", "transfer_status_change"), checks: await selects("fraud", "fraud_check") };
    expect(after.history - before.history).toBeLessThanOrEqual(2);
    expect(after.checks - before.checks).toBeLessThanOrEqual(2);
  });
});
