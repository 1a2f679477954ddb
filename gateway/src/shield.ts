import {
  GraphQLError,
  getArgumentValues,
  getNamedType,
  isObjectType,
  isAbstractType,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLResolveInfo,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from "graphql";
import { allow, type and, deny } from "graphql-shield";
import { DomainError } from "@vaultpay/kit";

/** A rule map in graphql-shield's shape: `{ Query: { me: isAuthenticated }, Account: { "*": allow } }`. */
export type Permissions = Record<string, Record<string, ShieldRule>>;

/** Any rule shield accepts: a rule, a logic rule (and/or/not…), allow or deny. */
export type ShieldRule = Parameters<typeof and>[number];

export interface SelectedField {
  typeName: string;
  fieldName: string;
  args: Record<string, unknown>;
}

/**
 * Every field an operation selects, with its argument values — through fragments, inline
 * fragments and nested selections. Selections on an interface or union are checked on every
 * possible type, so a rule cannot be sidestepped through an abstract type.
 */
export function selectedFields(
  schema: GraphQLSchema,
  document: DocumentNode,
  operation: OperationDefinitionNode,
  variables: Record<string, unknown>,
): SelectedField[] {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === "FragmentDefinition") fragments.set(definition.name.value, definition);
  }
  const fields: SelectedField[] = [];
  const seen = new Set<string>();
  // A fragment walked once in a type context adds nothing new the second time (fields are listed
  // once per arguments anyway); without this, fragments that spread each other twice walk 2^n times.
  const walkedFragments = new Set<string>();
  const root = schema.getRootType(operation.operation);
  if (!root) throw new GraphQLError(`schema has no ${operation.operation} type`);

  const walk = (selectionSet: SelectionSetNode, parentTypes: readonly GraphQLCompositeType[], visitedFragments: Set<string>) => {
    for (const selection of selectionSet.selections) {
      if (selection.kind === "Field") {
        const fieldName = selection.name.value;
        if (fieldName === "__typename") continue;
        for (const parentType of parentTypes) {
          const concreteTypes = isAbstractType(parentType) ? schema.getPossibleTypes(parentType) : [parentType];
          for (const concrete of concreteTypes) {
            if (!isObjectType(concrete) && !("getFields" in concrete)) continue;
            const definition = "getFields" in concrete ? concrete.getFields()[fieldName] : undefined;
            if (!definition) {
              // __schema / __type and anything else not in the type: named so a rule can decide.
              fields.push({ typeName: concrete.name, fieldName, args: {} });
              continue;
            }
            const args = getArgumentValues(definition, selection, variables);
            const key = `${concrete.name}.${fieldName}:${JSON.stringify(args)}`;
            if (!seen.has(key)) {
              seen.add(key);
              fields.push({ typeName: concrete.name, fieldName, args });
            }
            if (selection.selectionSet) {
              walk(selection.selectionSet, [getNamedType(definition.type) as GraphQLCompositeType], visitedFragments);
            }
          }
        }
      } else if (selection.kind === "InlineFragment") {
        const condition = selection.typeCondition
          ? (schema.getType(selection.typeCondition.name.value) as GraphQLCompositeType)
          : undefined;
        walk(selection.selectionSet, condition ? [condition] : parentTypes, visitedFragments);
      } else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        if (!fragment || visitedFragments.has(name)) continue;
        const condition = schema.getType(fragment.typeCondition.name.value) as GraphQLCompositeType;
        const walkKey = `${name}|${parentTypes.map((type) => type.name).join(",")}`;
        if (walkedFragments.has(walkKey)) continue;
        walkedFragments.add(walkKey);
        walk(fragment.selectionSet, [condition], new Set([...visitedFragments, name]));
      }
    }
  };
  walk(operation.selectionSet, [root], new Set());
  return fields;
}

export interface AuthorizeInput<C extends object> {
  schema: GraphQLSchema;
  document: DocumentNode;
  operation: OperationDefinitionNode;
  variables: Record<string, unknown>;
  context: C;
  permissions: Permissions;
}

/** authorizeFields for a whole operation. */
export function authorizeOperation<C extends object>(input: AuthorizeInput<C>): Promise<void> {
  const fields = selectedFields(input.schema, input.document, input.operation, input.variables);
  return authorizeFields({ schema: input.schema, fields, context: input.context, permissions: input.permissions });
}

/**
 * graphql-shield's rules, evaluated for the whole operation before it executes. The gateway has
 * no resolvers of its own (it runs query plans), so shield's resolver middleware cannot apply;
 * the same rule objects are resolved here per selected field instead, with shield's per-request
 * cache. Deny by default: a field without a rule is refused. The first refusal ends the request,
 * before any subgraph is called.
 */
export async function authorizeFields<C extends object>(input: {
  schema: GraphQLSchema;
  fields: readonly SelectedField[];
  context: C;
  permissions: Permissions;
}): Promise<void> {
  const shieldContext = Object.assign(input.context, { _shield: { cache: {} } });
  const options = { debug: false, allowExternalErrors: false, fallbackRule: deny, hashFunction: JSON.stringify };
  for (const field of input.fields) {
    const rule = input.permissions[field.typeName]?.[field.fieldName] ?? input.permissions[field.typeName]?.["*"] ?? deny;
    // Rules here decide on the caller and arguments; the parent object does not exist yet.
    const info = { fieldName: field.fieldName, parentType: input.schema.getType(field.typeName) } as unknown as GraphQLResolveInfo;
    let result: unknown;
    try {
      result = await rule.resolve({}, field.args, shieldContext, info, options);
    } catch (error) {
      result = error;
    }
    if (result === true) continue;
    if (result instanceof DomainError || result instanceof GraphQLError) throw result;
    throw new DomainError("FORBIDDEN", `Not allowed to access ${field.typeName}.${field.fieldName}`);
  }
}

export { allow, deny };
