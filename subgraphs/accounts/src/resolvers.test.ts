/** The subgraph's schema and resolvers together, as the gateway calls them (entity resolution included). */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSubgraphSchema } from "@apollo/subgraph";
import type * as GraphQL from "graphql";
import { generateKeyRingEnv, keyRingFrom } from "@vaultpay/crypto";
import type { Caller } from "@vaultpay/kit";
import { createTestDatabase } from "@vaultpay/testing";
import { createDb, type Db } from "./db.ts";
import { createResolvers, type Context } from "./resolvers.ts";
import type { Runtime } from "./runtime.ts";
import { AccountsService } from "./service.ts";

// @apollo/subgraph is CommonJS and builds its schema with graphql's CommonJS build: execute with the same one.
const { graphql, parse } = createRequire(import.meta.url)("graphql") as typeof GraphQL;

const caller = (userId: string, role: Caller["role"] = "CUSTOMER"): Caller => ({ userId, role, sessionId: "s", deviceId: "d", tokenId: "t" });

describe("accounts resolvers", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  let run: (source: string, context: Context, variables?: Record<string, unknown>) => ReturnType<typeof graphql>;

  beforeAll(async () => {
    database = await createTestDatabase("accounts");
    db = createDb(database.url);
    const service = new AccountsService({ db, ring: keyRingFrom(generateKeyRingEnv()), afterCommit: () => undefined });
    const runtime = { db, eventing: { connected: () => true } } as unknown as Runtime;
    const schema = buildSubgraphSchema([
      { typeDefs: parse(readFileSync(new URL("./schema.graphql", import.meta.url), "utf8")), resolvers: createResolvers(runtime, service) as never },
    ]);
    run = (source, contextValue, variableValues) => graphql({ schema, source, contextValue, variableValues });
  });
  afterAll(async () => {
    await db?.$disconnect();
    await database?.drop();
  });

  const entities = `query ($representations: [_Any!]!) { _entities(representations: $representations) {
    ... on Account { id maskedNumber balance { minor currency } owner { id } }
    ... on User { id accounts { id } }
  } }`;

  it("resolves an Account entity for its owner or an ADMIN, NOT_FOUND for anyone else, UNAUTHENTICATED for no one", async () => {
    const opened = await run(`mutation { openAccount(type: SAVINGS) { id balance { minor currency } createdAt } }`, { caller: caller("alice") });
    expect(opened.errors).toBeUndefined();
    const { id, balance, createdAt } = (opened.data as { openAccount: { id: string; balance: unknown; createdAt: string } }).openAccount;
    expect(balance).toEqual({ minor: "0", currency: "INR" });
    expect(createdAt).toMatch(/^\d{4}-\d{2}-\d{2}T.*Z$/);

    const representations = [{ __typename: "Account", id }];
    const own = await run(entities, { caller: caller("alice") }, { representations });
    expect(own.errors).toBeUndefined();
    expect(own.data).toEqual({ _entities: [{ id, maskedNumber: expect.stringMatching(/^XXXX\d{4}$/), balance: { minor: "0", currency: "INR" }, owner: { id: "alice" } }] });
    expect((await run(entities, { caller: caller("root", "ADMIN") }, { representations })).errors).toBeUndefined();

    const probe = await run(entities, { caller: caller("bob") }, { representations });
    expect(probe.errors?.map((error) => error.originalError && (error.originalError as { code?: string }).code)).toEqual(["NOT_FOUND"]);
    expect(JSON.stringify(probe.data)).not.toContain("XXXX");
    const anonymous = await run(entities, { caller: undefined }, { representations });
    expect(anonymous.errors?.map((error) => (error.originalError as { code?: string }).code)).toEqual(["UNAUTHENTICATED"]);
  });

  it("lists a User's accounts for that user or an ADMIN only", async () => {
    const representations = [{ __typename: "User", id: "alice" }];
    const own = await run(entities, { caller: caller("alice") }, { representations });
    expect((own.data as { _entities: Array<{ accounts: unknown[] }> })._entities[0]!.accounts).toHaveLength(1);
    expect((await run(entities, { caller: caller("root", "ADMIN") }, { representations })).errors).toBeUndefined();
    const probe = await run(entities, { caller: caller("bob") }, { representations });
    expect(probe.errors?.map((error) => (error.originalError as { code?: string }).code)).toEqual(["NOT_FOUND"]);
  });
});
