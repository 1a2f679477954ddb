/**
 * What the gateway checks of a request's input before its rules run, shared by the HTTP path and
 * graphql-ws: before parsing, the size of the document and the shape of the variables (cheap, and
 * bounding everything after); after validation, which operation runs and every input value it
 * gets, coerced the way execution will see them. A refusal is a client error, never INTERNAL.
 */
import {
  GraphQLError,
  Kind,
  TypeInfo,
  getNamedType,
  getOperationAST,
  getVariableValues,
  isListType,
  isNonNullType,
  isScalarType,
  typeFromAST,
  visit,
  visitWithTypeInfo,
  type DocumentNode,
  type GraphQLInputType,
  type GraphQLScalarType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type ValueNode,
} from "graphql";
import { DateTimeScalar, DomainError } from "@vaultpay/kit";
import { MinorUnitsScalar } from "@vaultpay/money";

export interface DocumentLimits {
  maxDocumentChars: number;
  /** Handed to graphql-js `parse`, which stops lexing past it. */
  maxDocumentTokens: number;
}

/**
 * Variables nest no deeper than this. The API's deepest input is a scalar argument (no input
 * objects, no nested lists), so 32 is generous; without a bound a 5,000-deep array reaches
 * recursive code (coercion, logging, JSON) and can overflow the stack.
 */
export const MAX_VARIABLES_DEPTH = 32;
/** Values in all variables together (every array item and object field counts). */
export const MAX_VARIABLE_VALUES = 10_000;

/** The custom scalars of the supergraph, with the parsing their subgraphs apply (kit, money). */
const SCALARS: ReadonlyMap<string, GraphQLScalarType> = new Map([
  [MinorUnitsScalar.name, MinorUnitsScalar as GraphQLScalarType],
  [DateTimeScalar.name, DateTimeScalar as GraphQLScalarType],
]);

const NUL_MESSAGE = "Strings must not contain the NUL character (U+0000)";

function badInput(message: string): DomainError {
  return new DomainError("BAD_USER_INPUT", message);
}

/**
 * Before parsing: refuses a document over the size cap and variables too deep or too many, and
 * any string in them holding U+0000 (PostgreSQL text cannot store it). Iterative, so no input can
 * exhaust the stack here.
 */
export function checkBeforeParsing(operation: { query: unknown; variables: unknown }, limits: DocumentLimits): void {
  if (typeof operation.query === "string" && operation.query.length > limits.maxDocumentChars) {
    throw badInput(`Document is too large: ${operation.query.length} characters (at most ${limits.maxDocumentChars})`);
  }
  const pending: Array<{ value: unknown; depth: number }> = [{ value: operation.variables, depth: 0 }];
  let count = 0;
  while (pending.length > 0) {
    const { value, depth } = pending.pop()!;
    if (++count > MAX_VARIABLE_VALUES) throw badInput(`Variables hold too many values (at most ${MAX_VARIABLE_VALUES})`);
    if (typeof value === "string") {
      if (value.includes("\u0000")) throw badInput(NUL_MESSAGE);
      continue;
    }
    if (value === null || typeof value !== "object") continue;
    if (depth >= MAX_VARIABLES_DEPTH) throw badInput(`Variables are nested too deep (at most ${MAX_VARIABLES_DEPTH} levels)`);
    for (const [key, item] of Object.entries(value)) {
      if (key.includes("\u0000")) throw badInput(NUL_MESSAGE);
      pending.push({ value: item, depth: depth + 1 });
    }
  }
}

/** The operation a validated document runs, or a client error naming what is missing. */
export function resolveOperation(document: DocumentNode, operationName: string | null | undefined): OperationDefinitionNode {
  const operation = getOperationAST(document, operationName);
  if (operation) return operation;
  if (operationName) throw badInput(`No operation named "${operationName}" in the document`);
  throw badInput("The document holds several operations: name the one to run in operationName");
}

/**
 * After validation: the operation's variables coerced as execution will coerce them (defaults
 * applied, required ones present and non-null, enums and lists checked), and every literal and
 * variable of a custom scalar parsed the way its subgraph will — so `amountMinor: "0x10"` is
 * BAD_USER_INPUT here, as the same value in a variable is in the subgraph. NUL is refused in
 * literals too. Returns the coerced variables, which is what rules must read.
 */
export function checkedVariables(
  schema: GraphQLSchema,
  document: DocumentNode,
  operation: OperationDefinitionNode,
  rawVariables: Record<string, unknown> | null | undefined,
): Record<string, unknown> {
  const coercion = getVariableValues(schema, operation.variableDefinitions ?? [], rawVariables ?? {}, { maxErrors: 5 });
  if (coercion.errors) throw badInput(coercion.errors.map((error) => error.message).join("; "));
  const variables = coercion.coerced;
  checkLiterals(schema, document);
  for (const definition of operation.variableDefinitions ?? []) {
    const name = definition.variable.name.value;
    checkScalarValue(variables[name], typeFromAST(schema, definition.type) as GraphQLInputType | undefined, `$${name}`);
  }
  return variables;
}

/**
 * Each literal's outcome, per schema and document: null when all literals pass, else the refusal's
 * message. It depends on nothing else, and the documents come back as the same objects from Apollo
 * Server's document store (HTTP) and the subscriptions' DocumentCache, so a document is walked
 * once, not on every request (a TypeInfo walk was ~0.3 ms of the gateway per transfer, profiled).
 */
const literalOutcomes = new WeakMap<GraphQLSchema, WeakMap<DocumentNode, string | null>>();

function checkLiterals(schema: GraphQLSchema, document: DocumentNode): void {
  let outcomes = literalOutcomes.get(schema);
  if (!outcomes) literalOutcomes.set(schema, (outcomes = new WeakMap()));
  const known = outcomes.get(document);
  if (known === null) return;
  if (known !== undefined) throw badInput(known);
  const typeInfo = new TypeInfo(schema);
  try {
    visit(
      document,
      visitWithTypeInfo(typeInfo, {
        enter(node) {
          if (node.kind === Kind.STRING && node.value.includes("\u0000")) throw badInput(NUL_MESSAGE);
          if (node.kind === Kind.VARIABLE_DEFINITION) return false; // defaults were coerced above
          if (node.kind === Kind.STRING || node.kind === Kind.INT || node.kind === Kind.FLOAT) {
            checkScalarLiteral(node, typeInfo.getInputType());
          }
          return undefined;
        },
      }),
    );
  } catch (error) {
    if (error instanceof DomainError) outcomes.set(document, error.message);
    throw error;
  }
  outcomes.set(document, null);
}

function checkScalarLiteral(node: ValueNode, type: GraphQLInputType | null | undefined): void {
  const named = type ? getNamedType(type) : undefined;
  const scalar = named && isScalarType(named) ? SCALARS.get(named.name) : undefined;
  if (!scalar) return;
  try {
    scalar.parseLiteral(node, undefined);
  } catch (error) {
    throw badInput(error instanceof GraphQLError || error instanceof Error ? error.message : `Invalid ${scalar.name}`);
  }
}

function checkScalarValue(value: unknown, type: GraphQLInputType | undefined, where: string): void {
  if (value === null || value === undefined || !type) return;
  const inner = isNonNullType(type) ? type.ofType : type;
  if (isListType(inner)) {
    if (Array.isArray(value)) for (const item of value) checkScalarValue(item, inner.ofType, where);
    return;
  }
  const scalar = isScalarType(inner) ? SCALARS.get(inner.name) : undefined;
  if (!scalar) return;
  try {
    scalar.parseValue(value);
  } catch (error) {
    throw badInput(`Variable "${where}": ${error instanceof Error ? error.message : `invalid ${scalar.name}`}`);
  }
}
