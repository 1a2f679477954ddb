import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { catalog, type EventType } from "./catalog.ts";
import { natsServers, redactNatsUrl } from "./nats.ts";
import { LOCAL_NATS_SERVERS, NATS_SERVICE_USERS, localNatsUrl, natsPermissions, type NatsServiceUser } from "./permissions.ts";
import { eventSubject } from "./streams.ts";

/** The service that emits each event type. A new type fails here until its publisher is named. */
const PUBLISHER: Record<EventType, NatsServiceUser> = {
  "auth.user.created": "auth",
  "auth.login.succeeded": "auth",
  "auth.login.failed": "auth",
  "auth.device.registered": "auth",
  "auth.session.revoked": "auth",
  "account.created": "accounts",
  "account.deposited": "accounts",
  "account.number.revealed": "accounts",
  "account.debited": "accounts",
  "account.debit.rejected": "accounts",
  "account.credited": "accounts",
  "account.credit.rejected": "accounts",
  "account.refunded": "accounts",
  "account.refund.rejected": "accounts",
  "transaction.initiated": "transactions",
  "transaction.credit.requested": "transactions",
  "transaction.refund.requested": "transactions",
  "transaction.status.changed": "transactions",
  "transaction.completed": "transactions",
  "transaction.failed": "transactions",
  "fraud.check.requested": "transactions",
  "fraud.check.completed": "fraud",
  "gateway.request": "gateway",
  "gateway.request.batch": "gateway",
  "operator.dlq.replay.requested": "audit",
};

/** NATS subject matching: `*` one token, `>` one or more at the end. */
function matches(subject: string, pattern: string): boolean {
  const tokens = subject.split(".");
  const wanted = pattern.split(".");
  for (const [index, token] of wanted.entries()) {
    if (token === ">") return tokens.length > index;
    if (index >= tokens.length || (token !== "*" && token !== tokens[index])) return false;
  }
  return tokens.length === wanted.length;
}

function mayPublish(user: NatsServiceUser, subject: string): boolean {
  const { publish } = natsPermissions(user);
  return publish.allow.some((pattern) => matches(subject, pattern)) && !publish.deny.some((pattern) => matches(subject, pattern));
}

describe("NATS permissions", () => {
  it("let each event be published by the service that emits it, and by audit's replay, by no other", () => {
    expect(Object.keys(PUBLISHER).sort()).toEqual(Object.keys(catalog).sort());
    for (const [type, publisher] of Object.entries(PUBLISHER) as Array<[EventType, NatsServiceUser]>) {
      const subject = eventSubject({ type, data: { transferId: "0198a9c4-7b7e-7000-8000-000000000001" } } as never);
      const allowed = NATS_SERVICE_USERS.filter((user) => mayPublish(user, subject));
      expect(allowed, type).toEqual(NATS_SERVICE_USERS.filter((user) => user === publisher || user === "audit"));
    }
  });

  it("let every service dead-letter, acknowledge and use JetStream's API, but not delete or purge a stream", () => {
    for (const user of NATS_SERVICE_USERS) {
      for (const subject of ["dlq.ACCOUNTS.x", "$JS.ACK.ACCOUNTS.x.1.2.3.4.5", "$JS.API.CONSUMER.MSG.NEXT.ACCOUNTS.x"])
        expect(mayPublish(user, subject), `${user} ${subject}`).toBe(true);
      for (const subject of [
        "$JS.API.STREAM.DELETE.TRANSACTIONS",
        "$JS.API.STREAM.PURGE.ACCOUNTS",
        "$JS.API.STREAM.MSG.DELETE.TRANSACTIONS",
      ])
        expect(mayPublish(user, subject), `${user} ${subject}`).toBe(false);
      expect(mayPublish(user, "$JS.API.STREAM.MSG.DELETE.DLQ"), user).toBe(user === "audit");
    }
  });
});

describe("NATS URLs with a user", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "vaultpay-nats-url-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("take the user from the servers, give the servers without it, and refuse two users", () => {
    expect(natsServers("nats://fraud:p%40ss@a:4222, nats://fraud:p%40ss@b:4222")).toEqual({
      servers: ["nats://a:4222", "nats://b:4222"],
      user: "fraud",
      pass: "p@ss",
    });
    expect(natsServers("nats://127.0.0.1:4222")).toEqual({ servers: ["nats://127.0.0.1:4222"] });
    expect(() => natsServers("nats://fraud:x@a:4222,nats://audit:x@b:4222")).toThrow(/same user/);
    expect(redactNatsUrl("nats://fraud:secret@a:4222,nats://b:4222")).toBe("nats://fraud:***@a:4222,nats://b:4222");
  });

  it("find the local stack's operator password in its data folder, or give the servers alone", () => {
    expect(localNatsUrl(dir)).toBe(LOCAL_NATS_SERVERS);
    mkdirSync(path.join(dir, "nats"));
    writeFileSync(path.join(dir, "nats", "users.json"), JSON.stringify({ operator: "op/pw", fraud: "f" }));
    expect(natsServers(localNatsUrl(dir))).toEqual({ servers: [LOCAL_NATS_SERVERS], user: "operator", pass: "op/pw" });
  });
});
