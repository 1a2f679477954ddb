import { buildSchema, getIntrospectionQuery, getOperationAST, parse, type OperationDefinitionNode } from "graphql";
import { describe, expect, it } from "vitest";
import { enforceLimits, measureOperation } from "./limits.ts";
import { selectedFields } from "./shield.ts";

const schema = buildSchema(`type User { id: ID!  friends: [User!]! }  type Query { me: User!  health: String }`);

/** 40 fragments, each spreading the next twice: 2^40 field uses in a few kilobytes. */
function fragmentBomb(levels: number): string {
  const fragments = Array.from({ length: levels }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`);
  return `query Bomb { ...F0 }\n${fragments.join("\n")}\nfragment F${levels} on Query { health }`;
}

describe("operation limits", () => {
  it("measures depth, fields and aliases through fragments", () => {
    const document = parse(`{ a: me { friends { id } } ...More } fragment More on Query { b: me { id } health }`);
    expect(measureOperation(document, document.definitions[0] as OperationDefinitionNode)).toEqual({ depth: 3, fields: 6, aliases: 2 });
  });

  it("sees an exponential fragment bomb in linear time, and refuses it", () => {
    const document = parse(fragmentBomb(40));
    const operation = document.definitions[0] as OperationDefinitionNode;
    // Walking each use would take 2^40 steps: this test only finishes because neither walk does.
    const shape = measureOperation(document, operation);
    expect(shape.fields).toBe(2 ** 40);
    expect(() => enforceLimits(shape, { maxDepth: 10, maxFields: 300, maxAliases: 30 })).toThrow(/too many fields/);
    // The rules' walk visits each fragment once per type context, not once per use.
    expect(selectedFields(schema, document, operation, {}).map((f) => `${f.typeName}.${f.fieldName}`)).toEqual(["Query.health"]);
  });

  it("counts introspection fields and their aliases, but lets the standard introspection query through", () => {
    const aliased = parse(`{ ${Array.from({ length: 100 }, (_, i) => `s${i}: __schema { types { name } }`).join(" ")} }`);
    const shape = measureOperation(aliased, aliased.definitions[0] as OperationDefinitionNode);
    expect(shape).toMatchObject({ fields: 300, aliases: 100 });
    expect(() => enforceLimits(shape, { maxDepth: 10, maxFields: 300, maxAliases: 30 })).toThrow(/too many aliases/);
    const typenames = parse(`{ ${Array.from({ length: 31 }, (_, i) => `t${i}: __typename`).join(" ")} }`);
    expect(() =>
      enforceLimits(measureOperation(typenames, typenames.definitions[0] as OperationDefinitionNode), {
        maxDepth: 10,
        maxFields: 300,
        maxAliases: 30,
      }),
    ).toThrow(/too many aliases/);
    const introspection = parse(
      getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, inputValueDeprecation: true }),
    );
    expect(() =>
      enforceLimits(measureOperation(introspection, getOperationAST(introspection)!), { maxDepth: 10, maxFields: 300, maxAliases: 30 }),
    ).not.toThrow();
  });
});
