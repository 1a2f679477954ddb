/**
 * The composed graph honours the public contract (shared/API.md): every type, field, argument and
 * enum value listed there exists with the same type. Fields may be added; none may be renamed,
 * removed or retyped without this failing.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Kind, parse, print, type DefinitionNode, type DocumentNode } from "graphql";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "@vaultpay/stack";

const CONTRACT_COPY = path.join(REPO_ROOT, "test/fixtures/api-contract.graphql");
const SHARED_API = path.join(REPO_ROOT, "../shared/API.md");
const ADDITIONS = path.join(REPO_ROOT, "test/fixtures/api-additions.graphql");

function byName(document: DocumentNode) {
  const map = new Map<string, DefinitionNode>();
  for (const definition of document.definitions) if ("name" in definition && definition.name) map.set(definition.name.value, definition);
  return map;
}

describe("public contract", () => {
  it("the copy of shared/API.md's schema is current (where shared/ is checked out beside the repo)", () => {
    if (!existsSync(SHARED_API)) return; // a clone without the steering docs has only the copy
    const fromDoc = /```graphql\n([\s\S]*?)```/.exec(readFileSync(SHARED_API, "utf8"))![1]!;
    expect(print(parse(readFileSync(CONTRACT_COPY, "utf8")))).toBe(print(parse(fromDoc)));
  });

  it("every contract type, field, argument and enum value is in the composed graph with the same type", () => {
    expect(missingFromGraph(parse(readFileSync(CONTRACT_COPY, "utf8")))).toEqual([]);
  });

  it("the additions since API.md are the README's and in the composed graph with the same types", () => {
    const additions = parse(readFileSync(ADDITIONS, "utf8"));
    const readme = readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## API: additions to the contract"));
    const fromReadme = /```graphql\n([\s\S]*?)```/.exec(section)?.[1];
    expect(fromReadme, "a graphql block under the README's API additions").toBeDefined();
    expect(print(parse(fromReadme!))).toBe(print(additions));
    expect(missingFromGraph(additions)).toEqual([]);
  });
});

/** What of `wanted` (types, or extensions of the root types) the composed graph lacks or types differently. */
function missingFromGraph(wanted: DocumentNode): string[] {
  const graph = byName(parse(readFileSync(path.join(REPO_ROOT, "supergraph.graphql"), "utf8")));
  const problems: string[] = [];
  for (const definition of wanted.definitions) {
    if (!("name" in definition) || !definition.name) continue;
    const name = definition.name.value;
    const found = graph.get(name);
    if (!found) {
      problems.push(`missing type ${name}`);
      continue;
    }
    if (definition.kind === Kind.ENUM_TYPE_DEFINITION && found.kind === Kind.ENUM_TYPE_DEFINITION) {
      const values = new Set(found.values?.map((value) => value.name.value));
      for (const value of definition.values ?? []) if (!values.has(value.name.value)) problems.push(`missing ${name}.${value.name.value}`);
    }
    const isObject = definition.kind === Kind.OBJECT_TYPE_DEFINITION || definition.kind === Kind.OBJECT_TYPE_EXTENSION;
    if (isObject && found.kind === Kind.OBJECT_TYPE_DEFINITION) {
      const fields = new Map(found.fields?.map((field) => [field.name.value, field]));
      for (const field of definition.fields ?? []) {
        const actual = fields.get(field.name.value);
        if (!actual) {
          problems.push(`missing ${name}.${field.name.value}`);
          continue;
        }
        if (print(actual.type) !== print(field.type))
          problems.push(`${name}.${field.name.value}: ${print(actual.type)} instead of ${print(field.type)}`);
        const args = new Map(actual.arguments?.map((arg) => [arg.name.value, arg]));
        for (const arg of field.arguments ?? []) {
          const actualArg = args.get(arg.name.value);
          if (!actualArg) problems.push(`missing argument ${name}.${field.name.value}(${arg.name.value})`);
          else if (print(actualArg.type) !== print(arg.type))
            problems.push(`${name}.${field.name.value}(${arg.name.value}): ${print(actualArg.type)} instead of ${print(arg.type)}`);
          else if ((arg.defaultValue && print(arg.defaultValue)) !== (actualArg.defaultValue && print(actualArg.defaultValue))) {
            problems.push(`${name}.${field.name.value}(${arg.name.value}) default differs`);
          }
        }
      }
    }
  }
  return problems;
}
