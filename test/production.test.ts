/**
 * The platform in production mode: no dev mailbox, no Sandbox, no introspection or suggestions;
 * codes reach customers only through the real SMTP server of this test (STARTTLS, a login), and a
 * whole sign-in works through it. Transfer notices reach the sender once per transfer and status
 * (email, and SMS through a real HTTPS provider that checks signatures), even when the events
 * arrive again.
 */
import { randomUUID } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEvent, eventHeaders, natsServers, type Event } from "@vaultpay/events";
import {
  fraudOnlyOnAmount,
  mintAccessToken,
  parsePrometheusText,
  samplesOf,
  valueOf,
  startTestSmsProvider,
  startTestSmtpServer,
  startTestStack,
  waitUntil,
  type TestSmsProvider,
  type TestSmtpServer,
  type TestStack,
} from "@vaultpay/testing";

type Stack = TestStack & { teardown: () => Promise<void> };

const ADMIN_EMAIL = "ops@bank.example";
const ADMIN_PASSWORD = "a real Passphrase 7";
const PHONE = "+919800000001";
const METRICS_TOKEN = "prometheus-scrape-token-0123456789abcdef";
/** Transfers over ₹500 fail the fraud check; nothing else is scored. */
const FRAUD_FAIL_OVER_MINOR = 50_000n;

function codes(result: { errors?: Array<{ extensions?: Record<string, unknown> }> }) {
  return (result.errors ?? []).map((error) => error.extensions?.code);
}

describe("production mode", () => {
  let smtp: TestSmtpServer;
  let sms: TestSmsProvider;
  let stack: Stack;

  beforeAll(async () => {
    smtp = await startTestSmtpServer();
    sms = await startTestSmsProvider({ https: true });
    stack = await startTestStack({
      nodeEnv: "production",
      env: {
        ...smtp.env(),
        ...sms.env(),
        // Production wants an https:// provider; its certificate is this test's own.
        NODE_EXTRA_CA_CERTS: sms.caFile,
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
        METRICS_TOKEN,
        ...fraudOnlyOnAmount(FRAUD_FAIL_OVER_MINOR),
      },
    });
  });
  afterAll(async () => {
    await stack?.teardown();
    await Promise.all([smtp?.stop(), sms?.stop()]);
  });

  /** The code in the newest mail to this address, once it has arrived. */
  async function codeFor(email: string, after: number): Promise<string> {
    const mail = await waitUntil(
      async () => smtp.received.slice(after).find((message) => message.to.includes(email)),
      `the code mailed to ${email}`,
    );
    expect(mail).toMatchObject({ from: "no-reply@vaultpay.test", secure: true, user: smtp.user, subject: "Your VaultPay sign-in code" });
    return /code is ([0-9]{6})/.exec(mail.text)![1]!;
  }

  async function signIn(email: string, password: string, register: boolean, deviceId: string): Promise<string> {
    const before = smtp.received.length;
    const asked = register
      ? await stack.graphql<{ register: { challengeId: string } }>(
          `mutation($email: String!, $password: String!, $device: String!) { register(email: $email, phone: "${PHONE}", password: $password, deviceId: $device) { challengeId } }`,
          { email, password, device: deviceId },
        )
      : await stack.graphql<{ login: { challengeId: string } }>(
          `mutation($email: String!, $password: String!, $device: String!) { login(email: $email, password: $password, deviceId: $device) { challengeId } }`,
          { email, password, device: deviceId },
        );
    expect(asked.errors).toBeUndefined();
    const challengeId = (asked.data as Record<string, { challengeId: string }>)[register ? "register" : "login"]!.challengeId;
    const verified = await stack.graphql<{ verifyOtp: { accessToken: string; user: { email: string } } }>(
      `mutation($id: ID!, $code: String!, $device: String!) { verifyOtp(challengeId: $id, code: $code, deviceId: $device) { accessToken user { email } } }`,
      { id: challengeId, code: await codeFor(email, before), device: deviceId },
    );
    expect(verified.errors).toBeUndefined();
    expect(verified.data!.verifyOtp.user.email).toBe(email);
    return verified.data!.verifyOtp.accessToken;
  }

  it("signs a new customer and the administrator in through the real SMTP server", async () => {
    const email = `asha-${randomUUID().slice(0, 8)}@example.com`;
    const token = await signIn(email, "correct horse 42 battery", true, "phone-1");
    const me = await stack.graphql<{ me: { email: string; role: string } }>(
      `{ me { email role } }`,
      {},
      { authorization: `Bearer ${token}` },
    );
    expect(me.data?.me).toEqual({ email, role: "CUSTOMER" });
    const admin = await signIn(ADMIN_EMAIL, ADMIN_PASSWORD, false, "ops-laptop");
    const users = await stack.graphql<{ users: Array<{ email: string }> }>(
      `{ users(first: 10) { email } }`,
      {},
      { authorization: `Bearer ${admin}` },
    );
    expect(users.data?.users.map((user) => user.email)).toContain(email);
  });

  it("has no dev mailbox, no introspection, no suggestions and no Sandbox", async () => {
    expect(codes(await stack.graphql(`{ devMailbox(to: "asha@example.com") { code } }`))).toEqual(["FORBIDDEN"]);
    const introspection = await stack.graphql(`{ __schema { types { name } } }`);
    expect(introspection.data).toBeUndefined();
    expect(codes(introspection)).toEqual(["GRAPHQL_VALIDATION_FAILED"]);
    const typo = await stack.graphql(`{ mee { email } }`);
    expect(typo.errors?.[0]?.message).not.toMatch(/Did you mean/);
    const landing = await fetch(stack.gatewayUrl, { headers: { accept: "text/html" } });
    expect(await landing.text()).not.toMatch(/sandbox|embeddable/i);
  });

  it("tells the sender once when a transfer completes and once when one fails, even when the events come again", async () => {
    const email = `ravi-${randomUUID().slice(0, 8)}@example.com`;
    const sender = await signIn(email, "plum orchard 77 kettle", true, "ravi-phone");
    const admin = await signIn(ADMIN_EMAIL, ADMIN_PASSWORD, false, "ops-laptop");
    const call = async <T>(token: string, query: string, variables: Record<string, unknown> = {}) => {
      const result = await stack.graphql<T>(query, variables, { authorization: `Bearer ${token}`, "x-device-id": "ravi-phone" });
      expect(result.errors).toBeUndefined();
      return result.data!;
    };
    const open = `mutation { openAccount(type: SAVINGS) { id number } }`;
    const from = (await call<{ openAccount: { id: string } }>(sender, open)).openAccount;
    const payee = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "CUSTOMER" });
    const to = (await call<{ openAccount: { number: string } }>(payee, open)).openAccount;
    await call(
      admin,
      `mutation($id: ID!) { depositFunds(accountId: $id, amountMinor: "100000", idempotencyKey: "${randomUUID()}") { id } }`,
      { id: from.id },
    );
    const transactions = new pg.Client({ connectionString: stack.databaseUrls.transactions });
    const auth = new pg.Client({ connectionString: stack.databaseUrls.auth });
    await Promise.all([transactions.connect(), auth.connect()]);
    const nc = await connect(natsServers(stack.nats.url));
    try {
      await waitUntil(
        async () => (await transactions.query(`SELECT count(*)::int AS n FROM account_directory`)).rows[0].n >= 2,
        "transactions to know both accounts",
      );
      const transfer = async (amountMinor: string, status: string) => {
        const { initiateTransfer } = await call<{ initiateTransfer: { id: string } }>(
          sender,
          `mutation($from: ID!, $to: String!, $amount: MinorUnits!, $key: String!) { initiateTransfer(fromAccountId: $from, toAccountNumber: $to, amountMinor: $amount, idempotencyKey: $key) { id } }`,
          { from: from.id, to: to.number, amount: amountMinor, key: randomUUID() },
        );
        await waitUntil(
          async () =>
            (await call<{ transfer: { status: string } }>(sender, `{ transfer(id: "${initiateTransfer.id}") { status } }`)).transfer
              .status === status,
          `transfer ${status}`,
        );
        return initiateTransfer.id;
      };
      const completedId = await transfer("10000", "COMPLETED");
      const failedId = await transfer("60000", "FAILED");

      const notices = () => smtp.received.filter((mail) => mail.to.includes(email) && mail.subject.startsWith("Transfer of"));
      const texts = () => sms.received.filter((message) => message.to === PHONE).map((message) => message.text);
      await waitUntil(async () => notices().length >= 2 && texts().length >= 2, "both notices by email and SMS");
      expect(
        notices()
          .map((mail) => mail.subject)
          .sort(),
      ).toEqual(["Transfer of 100.00 INR completed", "Transfer of 600.00 INR failed"]);
      expect(notices().find((mail) => mail.subject.endsWith("completed"))!.text).toContain(`Reference: ${completedId}.`);
      expect(notices().find((mail) => mail.subject.endsWith("failed"))!.text).toMatch(
        new RegExp(`returned to your account\\..*Reference: ${failedId}\\.`, "s"),
      );
      expect(sms.refusedSignatures).toBe(0);

      // The same events again: once as a redelivery (same event id, past JetStream's duplicate
      // window by a new Nats-Msg-Id), once re-emitted under a new event id (what a republishing
      // tool or a double emit would do) — only the (transfer, status) constraint can catch that one.
      const { rows } = await transactions.query<{ payload: Event }>(
        `SELECT payload FROM outbox_event WHERE type IN ('transaction.completed', 'transaction.failed') AND payload->'data'->>'transferId' = ANY($1)`,
        [[completedId, failedId]],
      );
      expect(rows).toHaveLength(2);
      const js = jetstream(nc);
      for (const { payload: event } of rows) {
        await js.publish(event.type, JSON.stringify(event), { msgID: `${event.id}:again`, headers: eventHeaders(event) });
        const copy = createEvent(event.type as "transaction.completed", event.data as never, {
          correlationId: event.correlationId,
          actor: {},
        });
        await js.publish(copy.type, JSON.stringify(copy), { msgID: copy.id, headers: eventHeaders(copy) });
      }
      const jsm = await jetstreamManager(nc);
      for (const durable of ["auth-notices-completed", "auth-notices-failed"]) {
        await waitUntil(async () => {
          const info = await jsm.consumers.info("TRANSACTIONS", durable);
          return info.num_pending === 0 && info.num_ack_pending === 0 && info.delivered.consumer_seq >= 3;
        }, `${durable} to take the copies`);
      }
      // Longer than the sender's poll: a second notice would have gone out by now.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(notices()).toHaveLength(2);
      expect(texts()).toHaveLength(2);
      const stored = await auth.query(`SELECT status, state FROM transfer_notice WHERE transfer_id = ANY($1) ORDER BY status`, [
        [completedId, failedId],
      ]);
      expect(stored.rows).toEqual([
        { status: "COMPLETED", state: "SENT" },
        { status: "FAILED", state: "SENT" },
      ]);
    } finally {
      await nc.close();
      await Promise.all([transactions.end(), auth.end()]);
    }
  });

  it("exports Prometheus metrics: gateway and subgraph requests, transfers by status, outbox and DLQ", async () => {
    const scrape = async (url: string, token?: string) => {
      const response = await fetch(url.replace(/\/graphql$/, "/metrics"), { headers: token ? { authorization: `Bearer ${token}` } : {} });
      expect(response.status, url).toBe(200);
      return parsePrometheusText(await response.text());
    };
    // The gateway's port is public: no token, no metrics.
    expect((await fetch(stack.gatewayUrl.replace(/\/graphql$/, "/metrics"))).status).toBe(401);
    const before = await scrape(stack.gatewayUrl, METRICS_TOKEN);
    const ok = { operation: "ProbeStatus", outcome: "ok" };
    const counted = (samples: ReturnType<typeof parsePrometheusText>) => valueOf(samples, "vaultpay_graphql_requests_total", ok) ?? 0;
    const admin = {
      authorization: `Bearer ${await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, { userId: randomUUID(), role: "ADMIN" })}`,
    };
    for (let i = 0; i < 3; i++)
      expect((await stack.graphql(`query ProbeStatus { authStatus { service } }`, {}, admin)).errors).toBeUndefined();
    expect(codes(await stack.graphql(`query ProbeMe { me { email } }`))).toEqual(["UNAUTHENTICATED"]);
    const after = await scrape(stack.gatewayUrl, METRICS_TOKEN);
    expect(counted(after) - counted(before)).toBe(3);
    expect(valueOf(after, "vaultpay_graphql_requests_total", { operation: "ProbeMe", outcome: "UNAUTHENTICATED" })).toBe(1);
    // The histogram holds the same operations: cumulative buckets ending in +Inf = _count.
    const buckets = samplesOf(after, "vaultpay_graphql_request_duration_seconds_bucket", ok);
    const bucketCounts = buckets.map((sample) => sample.value);
    expect(bucketCounts).toEqual([...bucketCounts].sort((a, b) => a - b));
    expect(buckets.at(-1)?.labels.le).toBe("+Inf");
    expect(buckets.at(-1)?.value).toBe(valueOf(after, "vaultpay_graphql_request_duration_seconds_count", ok));
    expect(valueOf(after, "vaultpay_graphql_request_duration_seconds_sum", ok)).toBeGreaterThan(0);
    // No subscription followed the transfers of the test before, so NATS sent this gateway none of
    // their status changes (each transfer's changes have their own subject).
    expect(valueOf(after, "vaultpay_subscriptions_active")).toBe(0);
    expect(valueOf(after, "vaultpay_status_changes_received_total")).toBe(0);

    // The transfers of the test before: one completed, one failed, nothing stuck in between.
    const transactions = await scrape(stack.urls.transactions);
    expect(valueOf(transactions, "vaultpay_transfers", { status: "COMPLETED" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(transactions, "vaultpay_transfers", { status: "FAILED" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(transactions, "vaultpay_transfers", { status: "PENDING" }) ?? 0).toBe(0);
    // Saga latency: each of those transfers reached DEBITED, then its end, within the histogram.
    expect(valueOf(transactions, "vaultpay_saga_seconds_to_status_count", { status: "DEBITED" })).toBeGreaterThanOrEqual(2);
    expect(valueOf(transactions, "vaultpay_saga_seconds_to_status_count", { status: "COMPLETED" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(transactions, "vaultpay_saga_seconds_to_status_bucket", { status: "FAILED", le: "+Inf" })).toBeGreaterThanOrEqual(1);
    for (const service of ["auth", "accounts", "transactions", "fraud", "audit"] as const) {
      const samples = await scrape(stack.urls[service]);
      expect(valueOf(samples, "vaultpay_dlq_messages", { service }), service).toBe(0);
      expect(valueOf(samples, "vaultpay_outbox_pending", { service }), service).toBeGreaterThanOrEqual(0);
      expect(valueOf(samples, "vaultpay_outbox_oldest_pending_age_seconds", { service }), service).toBeLessThan(60);
      // The saga's events are in TRANSACTIONS, far below its 1 GiB; the DLQ is empty.
      const filled = valueOf(samples, "vaultpay_stream_fill_ratio", { service, stream: "TRANSACTIONS" });
      expect(filled, service).toBeGreaterThan(0);
      expect(filled, service).toBeLessThan(0.01);
      expect(valueOf(samples, "vaultpay_stream_fill_ratio", { service, stream: "DLQ" }), service).toBe(0);
    }
    const fraud = await scrape(stack.urls.fraud);
    expect(valueOf(fraud, "vaultpay_fraud_verdicts_total", { passed: "true" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(fraud, "vaultpay_fraud_verdicts_total", { passed: "false" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(fraud, "vaultpay_fraud_rules_fired_total", { rule: "high-amount" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(await scrape(stack.urls.audit), "vaultpay_audit_chain_head_seq")).toBeGreaterThan(10);
    const authLag = await scrape(stack.urls.auth);
    expect(valueOf(authLag, "vaultpay_consumer_pending", { consumer: "auth-notices-completed" })).toBe(0);
    expect(valueOf(authLag, "vaultpay_consumer_ack_pending", { consumer: "auth-notices-failed" })).toBe(0);
    // Every notice was sent: none left SENDING (the gauge exists and reads the table).
    expect(valueOf(authLag, "vaultpay_transfer_notices_stuck_sending")).toBe(0);
    // Subgraphs count the fetches of the gateway's query plans (named after the operation).
    const auth = await scrape(stack.urls.auth);
    const fetches = samplesOf(auth, "vaultpay_graphql_requests_total", { outcome: "ok" }).filter((sample) =>
      sample.labels.operation!.startsWith("ProbeStatus"),
    );
    expect(fetches.reduce((sum, sample) => sum + sample.value, 0)).toBe(3);
  });
});
