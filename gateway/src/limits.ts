import type { DocumentNode, FragmentDefinitionNode, OperationDefinitionNode, SelectionSetNode } from "graphql";
import { DomainError } from "@vaultpay/kit";

export interface OperationLimits {
  maxDepth: number;
  /** Field selections in total, counting each alias and each fragment use: a proxy for cost. */
  maxFields: number;
  maxAliases: number;
}

export interface OperationShape {
  depth: number;
  fields: number;
  aliases: number;
}

/**
 * Depth, field count and aliases of one operation, fragments expanded — arithmetically: each
 * fragment is measured once and its counts added per use, so a document of fragments that each
 * spread the next twice costs linear time to measure while its (exponential) count is still seen.
 */
export function measureOperation(document: DocumentNode, operation: OperationDefinitionNode): OperationShape {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === "FragmentDefinition") fragments.set(definition.name.value, definition);
  }
  const measured = new Map<string, OperationShape>();
  const inProgress = new Set<string>();
  // depth here is relative: the deepest field level inside the selection set (1 = its own fields).
  const measure = (selectionSet: SelectionSetNode): OperationShape => {
    const shape: OperationShape = { depth: 0, fields: 0, aliases: 0 };
    const add = (part: OperationShape, extraDepth: number) => {
      shape.fields += part.fields;
      shape.aliases += part.aliases;
      shape.depth = Math.max(shape.depth, part.depth + extraDepth);
    };
    for (const selection of selectionSet.selections) {
      if (selection.kind === "Field") {
        // Introspection fields count like any other: 100 aliased __schema answer megabytes. Only
        // the depth below them is left out: introspection's type references nest `ofType` deeper
        // than any limit fit for data (Sandbox's query is 15 deep), its recursive part is bounded
        // by graphql-js' MaxIntrospectionDepthRule, and the document by the token cap.
        add({ depth: 1, fields: 1, aliases: selection.alias ? 1 : 0 }, 0);
        if (selection.selectionSet) {
          const inner = measure(selection.selectionSet);
          add(selection.name.value.startsWith("__") ? { ...inner, depth: 0 } : inner, 1);
        }
      } else if (selection.kind === "InlineFragment") {
        add(measure(selection.selectionSet), 0);
      } else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        if (!fragment || inProgress.has(name)) continue; // unknown or cyclic: validation refuses both
        if (!measured.has(name)) {
          inProgress.add(name);
          measured.set(name, measure(fragment.selectionSet));
          inProgress.delete(name);
        }
        add(measured.get(name)!, 0);
      }
    }
    return shape;
  };
  return measure(operation.selectionSet);
}

/** Refuses operations too deep, too wide or too aliased to be honest client queries. */
export function enforceLimits(shape: OperationShape, limits: OperationLimits): void {
  if (shape.depth > limits.maxDepth)
    throw new DomainError("BAD_USER_INPUT", `Query is too deep: ${shape.depth} levels (at most ${limits.maxDepth})`);
  if (shape.fields > limits.maxFields)
    throw new DomainError("BAD_USER_INPUT", `Query selects too many fields: ${shape.fields} (at most ${limits.maxFields})`);
  if (shape.aliases > limits.maxAliases)
    throw new DomainError("BAD_USER_INPUT", `Query uses too many aliases: ${shape.aliases} (at most ${limits.maxAliases})`);
}
