import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { natsUrlAs } from "./nats.ts";
/**
 * Who may publish what on NATS. Every process connects as its own NATS user, and the server lets
 * each publish only its own domain's events: a saga command (`transaction.initiated`) or a verdict
 * (`fraud.check.completed`) moves money, so a client that can reach NATS without being the
 * service that owns the subject must not be able to publish one. Without this, anything that could
 * open a TCP connection to NATS could debit any account and credit another (a forged
 * `transaction.initiated` naming the victim, then a forged passed verdict), and write what it
 * liked into the audit chain, while the subgraphs' HTTP doors refuse unsigned requests.
 *
 * The stack's own nats-server is configured from this table (packages/stack); a NATS run by the
 * operator takes the same users (deploy/k8s/nats-values.yaml holds them for the Helm chart, and
 * test/k8s.test.ts checks that block against natsAuthorization).
 */

/** The services' NATS users: one per process kind, replicas share theirs. */
export const NATS_SERVICE_USERS = ["auth", "accounts", "transactions", "fraud", "audit", "gateway"] as const;
export type NatsServiceUser = (typeof NATS_SERVICE_USERS)[number];

/**
 * The user of the operator's tools (`pnpm dlq:replay`, `pnpm reconcile`, the audit rebuild) and of
 * tests that inspect streams: no restriction. Reconcile re-publishes any service's outbox rows.
 */
export const NATS_OPERATOR_USER = "operator";
export type NatsUser = NatsServiceUser | typeof NATS_OPERATOR_USER;
export const NATS_USERS: readonly NatsUser[] = [...NATS_SERVICE_USERS, NATS_OPERATOR_USER];

/** Each service's own events (their subject is their type: packages/events/src/catalog). */
const OWN_EVENTS: Record<NatsServiceUser, readonly string[]> = {
  auth: ["auth.>"],
  accounts: ["account.>"],
  // The saga's orchestrator asks for the fraud check.
  transactions: ["transaction.>", "fraud.check.requested"],
  fraud: ["fraud.check.completed"],
  // A dead-letter replay re-publishes the letter on its original subject (any stream's), and the
  // replay request is recorded on OPERATOR: audit is the one service that publishes everywhere.
  audit: ["auth.>", "account.>", "transaction.>", "fraud.>", "gateway.>", "operator.>"],
  gateway: ["gateway.>"],
};

/**
 * What every service publishes besides its events: JetStream's API (streams and consumers are
 * made at start, pull requests, stream info), acks and flow control, and dead letters.
 */
const EVERY_SERVICE = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "dlq.>"] as const;

/**
 * JetStream API calls no service makes: deleting or emptying a stream, deleting a message (audit
 * deletes replayed dead letters, so DLQ is excepted for it; see natsPermissions).
 */
const NO_SERVICE = ["$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>"] as const;
const STREAMS_WITH_MESSAGES_NOBODY_DELETES = ["AUTH", "ACCOUNTS", "TRANSACTIONS", "FRAUD", "GATEWAY", "OPERATOR"] as const;

export interface NatsPermissions {
  publish: { allow: string[]; deny: string[] };
  subscribe: { allow: string[] };
}

/** One service user's permissions on the NATS server. */
export function natsPermissions(user: NatsServiceUser): NatsPermissions {
  const messageDeletes =
    user === "audit"
      ? STREAMS_WITH_MESSAGES_NOBODY_DELETES.map((stream) => `$JS.API.STREAM.MSG.DELETE.${stream}`)
      : ["$JS.API.STREAM.MSG.DELETE.>"];
  return {
    publish: { allow: [...OWN_EVENTS[user], ...EVERY_SERVICE], deny: [...NO_SERVICE, ...messageDeletes] },
    // Reading is not restricted yet: every service can read every stream through JetStream's API.
    subscribe: { allow: [">"] },
  };
}

/** The `authorization` block of a nats-server configuration: each user, its password and permissions. */
export function natsAuthorization(passwords: Readonly<Record<NatsUser, string>>) {
  return {
    users: NATS_USERS.map((user) =>
      user === NATS_OPERATOR_USER
        ? { user, password: passwords[user] }
        : { user, password: passwords[user], permissions: natsPermissions(user) },
    ),
  };
}

/** Where `pnpm start` listens for NATS unless that port was taken. */
export const LOCAL_NATS_SERVERS = "nats://127.0.0.1:4322";

/** The file a NATS store folder of the stack keeps its users' passwords in (packages/stack writes it). */
export function natsUsersFile(storeDir: string): string {
  return path.join(storeDir, "users.json");
}

/** The users' passwords a NATS store folder holds; none when it holds no file yet. */
export function readNatsPasswords(storeDir: string): Partial<Record<NatsUser, string>> {
  const file = natsUsersFile(storeDir);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Partial<Record<NatsUser, string>>) : {};
}

/**
 * The local stack's NATS as the operator (the default of the operator's tools when NATS_URL is not
 * given): its password from the users `pnpm start` made in the data folder (VAULTPAY_DATA_DIR, else
 * the repository's `.data`, as `pnpm start` chooses); without them (no stack started on this folder
 * yet), the servers without a user.
 */
export function localNatsUrl(dataDir = process.env.VAULTPAY_DATA_DIR ?? path.resolve(import.meta.dirname, "../../../.data")): string {
  const password = readNatsPasswords(path.join(dataDir, "nats"))[NATS_OPERATOR_USER];
  return password === undefined ? LOCAL_NATS_SERVERS : natsUrlAs(LOCAL_NATS_SERVERS, NATS_OPERATOR_USER, password);
}
