import { buildSchema, parse, type OperationDefinitionNode } from "graphql";
import { rule } from "graphql-shield";
import { describe, expect, it } from "vitest";
import { DomainError } from "@vaultpay/kit";
import { allow, authorizeOperation, selectedFields, type Permissions } from "./shield.ts";

const schema = buildSchema(`
  interface Node { id: ID! }
  type User implements Node { id: ID! email: String! friends(first: Int = 10): [User!]! }
  type Secret implements Node { id: ID! value: String! }
  type Query { me: User!  users(first: Int = 50): [User!]!  node(id: ID!): Node  health: String! }
  type Mutation { login(email: String!): String! }
`);

interface Ctx {
  role?: "CUSTOMER" | "ADMIN";
  calls: string[];
}

const isAuthenticated = rule({ cache: "contextual" })(async (_parent, _args, ctx: Ctx) => {
  ctx.calls.push("isAuthenticated");
  return ctx.role ? true : new DomainError("UNAUTHENTICATED", "Sign in first");
});
const isAdmin = rule({ cache: "contextual" })(async (_parent, _args, ctx: Ctx) => ctx.role === "ADMIN");
const smallPage = rule({ cache: "strict" })(async (_parent, args: { first?: number }) => (args.first ?? 0) <= 100);

const permissions: Permissions = {
  Query: { me: isAuthenticated, users: isAdmin, node: isAuthenticated, health: allow },
  Mutation: { login: allow },
  User: { "*": isAuthenticated, friends: smallPage },
  // Secret has no rules at all: deny by default.
};

function run(query: string, ctx: Ctx, variables: Record<string, unknown> = {}) {
  const document = parse(query);
  const operation = document.definitions.find((d) => d.kind === "OperationDefinition") as OperationDefinitionNode;
  return authorizeOperation({ schema, document, operation, variables, context: ctx, permissions });
}

describe("operation-level shield", () => {
  it("allows what every rule allows and caches contextual rules per request", async () => {
    const ctx: Ctx = { role: "CUSTOMER", calls: [] };
    await expect(run(`{ me { id email friends { id } } health }`, ctx)).resolves.toBeUndefined();
    expect(ctx.calls).toEqual(["isAuthenticated"]);
  });

  it("returns the rule's own error, or FORBIDDEN", async () => {
    await expect(run(`{ me { id } }`, { calls: [] })).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    await expect(run(`{ users { id } }`, { role: "CUSTOMER", calls: [] })).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(run(`{ users { id } }`, { role: "ADMIN", calls: [] })).resolves.toBeUndefined();
  });

  it("denies fields without a rule, also behind fragments and abstract types", async () => {
    const ctx: Ctx = { role: "CUSTOMER", calls: [] };
    await expect(run(`{ node(id: "1") { id } }`, ctx)).rejects.toMatchObject({ code: "FORBIDDEN" }); // Secret.id via Node
    await expect(run(`{ node(id: "1") { ... on Secret { value } } }`, ctx)).rejects.toMatchObject({
      message: "Not allowed to access Secret.value",
    });
    await expect(run(`query { ...Q } fragment Q on Query { users { id } }`, ctx)).rejects.toMatchObject({ code: "FORBIDDEN" });
  });

  it("sees argument values, including variables and defaults", async () => {
    const ctx: Ctx = { role: "CUSTOMER", calls: [] };
    await expect(run(`query($n: Int) { me { friends(first: $n) { id } } }`, ctx, { n: 101 })).rejects.toMatchObject({ code: "FORBIDDEN" });
    await expect(run(`query($n: Int) { me { friends(first: $n) { id } } }`, ctx, { n: 100 })).resolves.toBeUndefined();
  });

  it("lists selected fields once per distinct arguments", () => {
    const document = parse(`{ a: me { id } b: me { id email } }`);
    const fields = selectedFields(schema, document, document.definitions[0] as OperationDefinitionNode, {});
    expect(fields.map((f) => `${f.typeName}.${f.fieldName}`)).toEqual(["Query.me", "User.id", "User.email"]);
  });
});
