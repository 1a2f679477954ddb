/**
 * One side of the delivery tests, in its own process so the test can really kill it:
 *   publish-then-die  commit an account.created event to the accounts outbox, then SIGKILL itself
 *                     before any relay runs (a crash between commit and publish)
 *   relay             run the accounts outbox relay until stopped
 *   consume           run the audit-side consumer, recording each event's effect
 *   consume-then-die  the same, but SIGKILL itself after the first commit, before the ack
 * Prints one JSON line per fact the test waits for.
 */
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectJetStream, EventConsumer, OutboxRelay, appendToOutbox, createEvent } from "@vaultpay/events";
import { createLogger } from "@vaultpay/kit";
import { createDb as createAccountsDb } from "../../subgraphs/accounts/src/db.ts";
import { createDb as createAuditDb } from "../../subgraphs/audit/src/db.ts";

const [mode = ""] = process.argv.slice(2);
const logger = createLogger({ service: `worker-${mode}`, level: "warn" });
const say = (fact: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(fact)}\n`);
const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} missing`);
  return value;
};

if (mode === "publish-then-die") {
  const db = createAccountsDb(env("PUBLISHER_DATABASE_URL"));
  const event = createEvent(
    "account.created",
    {
      accountId: env("ACCOUNT_ID"),
      userId: "user-1",
      type: "SAVINGS",
      currency: "INR",
      maskedNumber: "XXXX1234",
      numberBlindIndex: "bi-1234",
    },
    { correlationId: "corr-delivery", actor: {} },
  );
  await db.$transaction(async (tx) => {
    await tx.$executeRawUnsafe(`INSERT INTO delivery_account (id) VALUES ($1)`, env("ACCOUNT_ID"));
    await appendToOutbox(tx, event);
  });
  say({ committed: event.id });
  process.kill(process.pid, "SIGKILL");
} else if (mode === "relay") {
  const db = createAccountsDb(env("PUBLISHER_DATABASE_URL"));
  const { js } = await connectJetStream(env("NATS_URL"), "relay", logger);
  const relay = new OutboxRelay({ db, js, logger, idleMs: 50 });
  relay.start();
  say({ relay: "started" });
} else if (mode === "consume" || mode === "consume-then-die") {
  const db = createAuditDb(env("CONSUMER_DATABASE_URL"));
  const { nc } = await connectJetStream(env("NATS_URL"), "consumer", logger);
  const consumer = new EventConsumer({
    name: "audit-delivery-test",
    stream: "ACCOUNTS",
    filterSubject: "account.created",
    db,
    js: jetstream(nc),
    jsm: await jetstreamManager(nc),
    logger,
    ackWaitMs: 1_000,
    handle: async (event, tx) => {
      await tx.$executeRawUnsafe(`INSERT INTO delivery_effect (event_id) VALUES ($1::uuid)`, event.id);
    },
    afterCommit: () => {
      say({ committedEffect: true });
      if (mode === "consume-then-die") process.kill(process.pid, "SIGKILL");
    },
  });
  await consumer.start();
  say({ consumer: "started" });
} else {
  throw new Error(`unknown mode ${mode}`);
}
