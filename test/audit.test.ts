/**
 * The audit log through the gateway, with the whole stack running: a customer's request leaves its
 * trail (the gateway's request event and the accounts event) under the request's correlation id,
 * readable and verifiable by an ADMIN only.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintAccessToken, startTestStack, waitUntil, type TestStack } from "@vaultpay/testing";

const AUDIT_LOG = `query ($correlationId: String, $type: String, $first: Int, $afterSeq: Int) {
  auditLog(correlationId: $correlationId, type: $type, first: $first, afterSeq: $afterSeq) { id seq type occurredAt correlationId actorUserId data hash }
}`;

interface AuditRecord {
  id: string;
  seq: number;
  type: string;
  occurredAt: string;
  correlationId: string | null;
  actorUserId: string | null;
  data: string;
  hash: string;
}

describe("audit log through the gateway", () => {
  let stack: TestStack & { teardown: () => Promise<void> };
  const alice = { userId: randomUUID(), role: "CUSTOMER" as const };
  const admin = { userId: randomUUID(), role: "ADMIN" as const };
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    stack = await startTestStack();
    for (const [name, claims] of Object.entries({ alice, admin }))
      tokens[name] = await mintAccessToken(stack.secrets.JWT_PRIVATE_JWK, claims);
  });
  afterAll(async () => {
    await stack?.teardown();
  });

  const as = (who: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${tokens[who]}`, ...extra });
  const codes = (result: { errors?: Array<{ extensions?: Record<string, unknown> }> }) =>
    result.errors?.map((error) => error.extensions?.code);

  it("shows an ADMIN a request's trail under its correlation id, and a valid chain", async () => {
    const correlationId = `e2e-audit-${randomUUID()}`;
    const opened = await stack.graphql<{ openAccount: { id: string } }>(
      `mutation { openAccount(type: SAVINGS) { id } }`,
      {},
      as("alice", { "x-correlation-id": correlationId }),
    );
    expect(opened.errors).toBeUndefined();

    const trail = await waitUntil(async () => {
      const result = await stack.graphql<{ auditLog: AuditRecord[] }>(AUDIT_LOG, { correlationId }, as("admin"));
      expect(result.errors).toBeUndefined();
      const records = result.data!.auditLog;
      const types = records.map((record) => record.type);
      return types.includes("account.created") && types.includes("gateway.request") && records;
    }, "the request's audit trail");
    for (const record of trail) {
      expect(record).toMatchObject({ correlationId, actorUserId: alice.userId });
      expect(record.hash).toMatch(/^[0-9a-f]{64}$/);
      expect(() => JSON.parse(record.data)).not.toThrow();
    }
    const created = trail.find((record) => record.type === "account.created")!;
    expect(JSON.parse(created.data)).toMatchObject({ accountId: opened.data!.openAccount.id, userId: alice.userId });
    expect(trail.map((record) => record.seq)).toEqual([...trail.map((record) => record.seq)].sort((a, b) => a - b));

    const onlyCreated = await stack.graphql<{ auditLog: AuditRecord[] }>(
      AUDIT_LOG,
      { correlationId, type: "account.created" },
      as("admin"),
    );
    expect(onlyCreated.data!.auditLog.map((record) => record.id)).toEqual([created.id]);

    const verification = await stack.graphql<{ verifyAuditChain: { valid: boolean; checked: number; firstBrokenSeq: number | null } }>(
      `{ verifyAuditChain { valid checked firstBrokenSeq } }`,
      {},
      as("admin"),
    );
    expect(verification.data!.verifyAuditChain).toMatchObject({ valid: true, firstBrokenSeq: null });
    expect(verification.data!.verifyAuditChain.checked).toBeGreaterThanOrEqual(trail.length);

    expect(codes(await stack.graphql(AUDIT_LOG, { first: 501 }, as("admin")))).toEqual(["BAD_USER_INPUT"]);
  });

  it("records each read through the gateway as its own gateway.request under its correlation id (reads travel in batches)", async () => {
    const reads = [`e2e-read-${randomUUID()}`, `e2e-read-${randomUUID()}`];
    for (const correlationId of reads) {
      const result = await stack.graphql(`query MyAccounts { myAccounts { id } }`, {}, as("alice", { "x-correlation-id": correlationId }));
      expect(result.errors).toBeUndefined();
    }
    for (const correlationId of reads) {
      const records = await waitUntil(async () => {
        const result = await stack.graphql<{ auditLog: AuditRecord[] }>(AUDIT_LOG, { correlationId }, as("admin"));
        expect(result.errors).toBeUndefined();
        return result.data!.auditLog.length > 0 && result.data!.auditLog;
      }, "the read's audit record");
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ type: "gateway.request", correlationId, actorUserId: alice.userId });
      expect(JSON.parse(records[0]!.data)).toMatchObject({ operationName: "MyAccounts", operationType: "query", outcome: "success" });
    }
  });

  it("refuses everyone but an ADMIN", async () => {
    expect(codes(await stack.graphql(AUDIT_LOG, {}, as("alice")))).toEqual(["FORBIDDEN"]);
    expect(codes(await stack.graphql(`{ verifyAuditChain { valid } }`, {}, as("alice")))).toEqual(["FORBIDDEN"]);
    expect(codes(await stack.graphql(AUDIT_LOG, {}))).toEqual(["UNAUTHENTICATED"]);
  });
});
