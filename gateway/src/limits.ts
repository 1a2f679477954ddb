import type { DocumentNode, FragmentDefinitionNode, OperationDefinitionNode, SelectionSetNode } from "graphql";
import { DomainError } from "@vaultpay/kit";

export interface OperationLimits {
  maxDepth: number;
  /** Field selections in total, counting each alias and each fragment use: a proxy for cost. */
  maxFields: number;
  maxAliases: number;
}

export const DEFAULT_LIMITS: OperationLimits = { maxDepth: 10, maxFields: 300, maxAliases: 30 };

export interface OperationShape {
  depth: number;
  fields: number;
  aliases: number;
}

/** Depth, field count and aliases of one operation, fragments expanded (cycles are invalid GraphQL). */
export function measureOperation(document: DocumentNode, operation: OperationDefinitionNode): OperationShape {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === "FragmentDefinition") fragments.set(definition.name.value, definition);
  }
  const shape: OperationShape = { depth: 0, fields: 0, aliases: 0 };
  const walk = (selectionSet: SelectionSetNode, depth: number, trail: ReadonlySet<string>) => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === "Field") {
        if (selection.name.value.startsWith("__")) continue; // introspection is gated separately
        shape.fields++;
        if (selection.alias) shape.aliases++;
        shape.depth = Math.max(shape.depth, depth);
        if (selection.selectionSet) walk(selection.selectionSet, depth + 1, trail);
      } else if (selection.kind === "InlineFragment") {
        walk(selection.selectionSet, depth, trail);
      } else {
        const fragment = fragments.get(selection.name.value);
        if (fragment && !trail.has(fragment.name.value)) walk(fragment.selectionSet, depth, new Set([...trail, fragment.name.value]));
      }
    }
  };
  walk(operation.selectionSet, 1, new Set());
  return shape;
}

/** Refuses operations too deep, too wide or too aliased to be honest client queries. */
export function enforceLimits(shape: OperationShape, limits: OperationLimits): void {
  if (shape.depth > limits.maxDepth) throw new DomainError("BAD_USER_INPUT", `Query is too deep: ${shape.depth} levels (at most ${limits.maxDepth})`);
  if (shape.fields > limits.maxFields) throw new DomainError("BAD_USER_INPUT", `Query selects too many fields: ${shape.fields} (at most ${limits.maxFields})`);
  if (shape.aliases > limits.maxAliases) throw new DomainError("BAD_USER_INPUT", `Query uses too many aliases: ${shape.aliases} (at most ${limits.maxAliases})`);
}
