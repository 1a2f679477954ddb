/** The subgraph's schema and resolvers together, as the gateway calls them (entity resolution included). */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
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

const caller = (userId: string, role: Caller["role"] = "CUSTOMER"): Caller => ({
  userId,
  role,
  sessionId: "s",
  deviceId: "d",
  tokenId: "t",
});

describe("accounts resolvers", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Db;
  let service: AccountsService;
  let run: (source: string, context: Context, variables?: Record<string, unknown>) => ReturnType<typeof graphql>;

  beforeAll(async () => {
    database = await createTestDatabase("accounts");
    db = createDb(database.url);
    service = new AccountsService({ db, ring: keyRingFrom(generateKeyRingEnv()), afterCommit: () => undefined });
    const runtime = { db, eventing: { connected: () => true } } as unknown as Runtime;
    const schema = buildSubgraphSchema([
      {
        typeDefs: parse(readFileSync(new URL("./schema.graphql", import.meta.url), "utf8")),
        resolvers: createResolvers(runtime, service) as never,
      },
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
    const opened = await run(`mutation { openAccount(type: SAVINGS) { id balance { minor currency } createdAt } }`, {
      caller: caller("alice"),
    });
    expect(opened.errors).toBeUndefined();
    const { id, balance, createdAt } = (opened.data as { openAccount: { id: string; balance: unknown; createdAt: string } }).openAccount;
    expect(balance).toEqual({ minor: "0", currency: "INR" });
    expect(createdAt).toMatch(/^\d{4}-\d{2}-\d{2}T.*Z$/);

    const representations = [{ __typename: "Account", id }];
    const own = await run(entities, { caller: caller("alice") }, { representations });
    expect(own.errors).toBeUndefined();
    expect(own.data).toEqual({
      _entities: [
        { id, maskedNumber: expect.stringMatching(/^XXXX\d{4}$/), balance: { minor: "0", currency: "INR" }, owner: { id: "alice" } },
      ],
    });
    expect((await run(entities, { caller: caller("root", "ADMIN") }, { representations })).errors).toBeUndefined();

    const probe = await run(entities, { caller: caller("bob") }, { representations });
    expect(probe.errors?.map((error) => error.originalError && (error.originalError as { code?: string }).code)).toEqual(["NOT_FOUND"]);
    expect(JSON.stringify(probe.data)).not.toContain("XXXX");
    const anonymous = await run(entities, { caller: undefined }, { representations });
    expect(anonymous.errors?.map((error) => (error.originalError as { code?: string }).code)).toEqual(["UNAUTHENTICATED"]);
  });

  it("resolves a page of Account entities together, each with its own answer, in order", async () => {
    await run(`mutation { openAccount(type: CURRENT) { id } }`, { caller: caller("alice") });
    const bobs = await run(`mutation { openAccount(type: CURRENT) { id } }`, { caller: caller("bob") });
    const mine = await run(`{ myAccounts { id } }`, { caller: caller("alice") });
    const aliceIds = (mine.data as { myAccounts: Array<{ id: string }> }).myAccounts.map((account) => account.id);
    const bobId = (bobs.data as { openAccount: { id: string } }).openAccount.id;
    const ids = [aliceIds[1]!, bobId, aliceIds[0]!, aliceIds[1]!, "not-a-uuid"];
    const getMany = vi.spyOn(service, "getMany");
    const result = await run(entities, { caller: caller("alice") }, { representations: ids.map((id) => ({ __typename: "Account", id })) });
    // One query for the page, each id once.
    expect(getMany.mock.calls).toEqual([[expect.anything(), [aliceIds[1], bobId, aliceIds[0], "not-a-uuid"]]]);
    getMany.mockRestore();
    const page = (result.data as { _entities: Array<{ id: string } | null> })._entities;
    expect(page.map((entity) => entity?.id ?? null)).toEqual([aliceIds[1], null, aliceIds[0], aliceIds[1], null]);
    expect(result.errors?.map((error) => [error.path?.join("."), (error.originalError as { code?: string }).code])).toEqual([
      ["_entities.1", "NOT_FOUND"],
      ["_entities.4", "NOT_FOUND"],
    ]);
  });

  it("lists a User's accounts for that user or an ADMIN only", async () => {
    const representations = [{ __typename: "User", id: "alice" }];
    const own = await run(entities, { caller: caller("alice") }, { representations });
    expect((own.data as { _entities: Array<{ accounts: unknown[] }> })._entities[0]!.accounts).toHaveLength(2);
    expect((await run(entities, { caller: caller("root", "ADMIN") }, { representations })).errors).toBeUndefined();
    const probe = await run(entities, { caller: caller("bob") }, { representations });
    expect(probe.errors?.map((error) => (error.originalError as { code?: string }).code)).toEqual(["NOT_FOUND"]);
  });
});
