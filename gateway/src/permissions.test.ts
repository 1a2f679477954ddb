import { readFileSync } from "node:fs";
import { buildSchema, parse, type OperationDefinitionNode } from "graphql";
import { describe, expect, it } from "vitest";
import type { Caller } from "@vaultpay/kit";
import { permissions, type GatewayContext } from "./permissions.ts";
import { authorizeOperation } from "./shield.ts";

const schema = buildSchema(`
  type User { id: ID! }
  type DevMessage { body: String! }
  type DeadLetter { id: ID! }
  type DeadLetterReplay { replayed: Int! }
  type Query { me: User!  users: [User!]!  devMailbox(to: String!): [DevMessage!]!  deadLetters(consumer: String): [DeadLetter!]!  brandNew: String }
  type Mutation { login(email: String!): String!  depositFunds(accountId: ID!): String!  replayDeadLetters(consumer: String, ids: [ID!]): DeadLetterReplay! }
`);

const caller = (role: Caller["role"]): Caller => ({ userId: "u", role, sessionId: "s", deviceId: "d", tokenId: "t" });

function check(query: string, context: GatewayContext) {
  const document = parse(query);
  const operation = document.definitions[0] as OperationDefinitionNode;
  return authorizeOperation({ schema, document, operation, variables: {}, context: { ...context }, permissions });
}

describe("gateway permissions (shared/API.md)", () => {
  it("keeps development aids out of production", async () => {
    await expect(check(`{ devMailbox(to: "a@b.c") { body } }`, { production: false })).resolves.toBeUndefined();
    await expect(check(`{ devMailbox(to: "a@b.c") { body } }`, { production: true })).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(check(`{ __schema { queryType { name } } }`, { production: true })).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(check(`{ __schema { queryType { name } } }`, { production: false })).resolves.toBeUndefined();
  });

  it("opens credential mutations to everyone and admin operations to admins only", async () => {
    await expect(check(`mutation { login(email: "a@b.c") }`, { production: true })).resolves.toBeUndefined();
    await expect(
      check(`mutation { depositFunds(accountId: "1") }`, { production: true, caller: caller("CUSTOMER") }),
    ).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(
      check(`mutation { depositFunds(accountId: "1") }`, { production: true, caller: caller("ADMIN") }),
    ).resolves.toBeUndefined();
    await expect(check(`{ users { id } }`, { production: true })).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    await expect(check(`{ me { id } }`, { production: true, caller: caller("CUSTOMER") })).resolves.toBeUndefined();
  });

  it("lets only an ADMIN list and replay dead letters", async () => {
    for (const query of [`{ deadLetters { id } }`, `mutation { replayDeadLetters(consumer: "accounts-saga") { replayed } }`]) {
      await expect(check(query, { production: false })).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
      await expect(check(query, { production: false, caller: caller("CUSTOMER") })).rejects.toMatchObject({ code: "FORBIDDEN" });
      await expect(check(query, { production: true, caller: caller("ADMIN") })).resolves.toBeUndefined();
    }
  });

  it("closes a root field nobody has decided about", async () => {
    await expect(check(`{ brandNew }`, { production: false, caller: caller("ADMIN") })).rejects.toMatchObject({ code: "FORBIDDEN" });
  });
});

describe("the composed graph", () => {
  it("has a decision for every root field and object type (run `pnpm compose` first)", () => {
    const supergraph = parse(readFileSync(new URL("../../supergraph.graphql", import.meta.url), "utf8"));
    const undecided: string[] = [];
    for (const definition of supergraph.definitions) {
      if (
        definition.kind !== "ObjectTypeDefinition" ||
        definition.name.value.startsWith("join__") ||
        definition.name.value.startsWith("link__")
      )
        continue;
      const type = definition.name.value;
      const isRoot = ["Query", "Mutation", "Subscription"].includes(type);
      if (!isRoot && !permissions[type]) undecided.push(type);
      if (isRoot)
        for (const field of definition.fields ?? [])
          if (!permissions[type]?.[field.name.value]) undecided.push(`${type}.${field.name.value}`);
    }
    expect(undecided).toEqual([]);
  });
});
