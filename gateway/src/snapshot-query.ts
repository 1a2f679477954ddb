/**
 * The queries a transferStatusChanged subscription asks the federated graph: the subscriber's own
 * selection as a `transfer(id)` query (so every field works and the owning subgraph checks
 * ownership each time), and the status history it reports from.
 */
import {
  Kind,
  getArgumentValues,
  getOperationAST,
  print,
  visit,
  type DocumentNode,
  type ExecutionArgs,
  type FieldNode,
  type OperationDefinitionNode,
} from "graphql";

/** The transfer's statuses so far, oldest first. */
export const STATUS_QUERY = `query TransferStatusHistory($id: ID!) { transfer(id: $id) { status statusHistory { status reason at } } }`;

/**
 * The response key under which the snapshot query also asks the transfer's status history, so one
 * read answers both what happened so far and the transfer as it is now (the subscriber's own
 * selection cannot use it: `vp` names are the gateway's, as `$vpTransferId` is).
 */
export const HISTORY_KEY = "vpStatusHistory";

/** What a subscription asks: its transfer, its root field, and its selection as a query with the variables for it. */
export interface SnapshotPlan {
  transferId: string;
  root: FieldNode;
  query: string;
  variables: Record<string, unknown>;
}

/** The plan for a validated transferStatusChanged operation (graphql-ws hands over its execution args). */
export function snapshotPlan(args: Pick<ExecutionArgs, "document" | "operationName" | "schema" | "variableValues">): SnapshotPlan {
  const operation = getOperationAST(args.document, args.operationName)!;
  const root = operation.selectionSet.selections[0] as FieldNode;
  const field = args.schema.getSubscriptionType()!.getFields()[root.name.value]!;
  const { id } = getArgumentValues(field, root, args.variableValues ?? undefined) as { id: string };
  return {
    transferId: id,
    root,
    query: snapshotQueryOf(args.document, args.operationName ?? null, operation, root),
    variables: { ...(args.variableValues ?? {}), vpTransferId: id },
  };
}

/**
 * Snapshot queries by document and operation name, written once each: the documents come from the
 * subscriptions' DocumentCache, one object per query text, and the query depends on nothing else.
 * Walking and printing it for every subscription was ~2 % of the gateway's CPU in the saga
 * benchmark's open loop. Dropped with their documents.
 */
const snapshotQueries = new WeakMap<DocumentNode, Map<string | null, string>>();

function snapshotQueryOf(
  document: DocumentNode,
  operationName: string | null,
  operation: OperationDefinitionNode,
  root: FieldNode,
): string {
  let byOperation = snapshotQueries.get(document);
  if (!byOperation) {
    byOperation = new Map();
    snapshotQueries.set(document, byOperation);
  }
  let query = byOperation.get(operationName);
  if (query === undefined) {
    query = snapshotQuery(document, operation, root);
    byOperation.set(operationName, query);
  }
  return query;
}

/** The subscription's selection, asked as a query: `transfer(id: $vpTransferId) { …same fields… vpStatusHistory: statusHistory { … } }`. */
export function snapshotQuery(document: DocumentNode, operation: OperationDefinitionNode, root: FieldNode): string {
  const fragments = document.definitions.filter((definition) => definition.kind === Kind.FRAGMENT_DEFINITION);
  // Only the variables the payload's selection uses (the subscription's `$id` is replaced).
  const used = new Set<string>();
  const collect = { Variable: (node: { name: { value: string } }) => void used.add(node.name.value) };
  visit(root.selectionSet!, collect);
  for (const fragment of fragments) visit(fragment, collect);
  const query: OperationDefinitionNode = {
    kind: Kind.OPERATION_DEFINITION,
    operation: "query" as OperationDefinitionNode["operation"],
    name: { kind: Kind.NAME, value: "TransferStatusSnapshot" },
    variableDefinitions: [
      ...(operation.variableDefinitions ?? []).filter((definition) => used.has(definition.variable.name.value)),
      {
        kind: Kind.VARIABLE_DEFINITION,
        variable: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: "vpTransferId" } },
        type: { kind: Kind.NON_NULL_TYPE, type: { kind: Kind.NAMED_TYPE, name: { kind: Kind.NAME, value: "ID" } } },
      },
    ],
    selectionSet: {
      kind: Kind.SELECTION_SET,
      selections: [
        {
          kind: Kind.FIELD,
          name: { kind: Kind.NAME, value: "transfer" },
          arguments: [
            {
              kind: Kind.ARGUMENT,
              name: { kind: Kind.NAME, value: "id" },
              value: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: "vpTransferId" } },
            },
          ],
          selectionSet: { kind: Kind.SELECTION_SET, selections: [...(root.selectionSet?.selections ?? []), historySelection()] },
        },
      ],
    },
  };
  return print({ kind: Kind.DOCUMENT, definitions: [query, ...fragments] });
}

/** `vpStatusHistory: statusHistory { status reason at }`. */
function historySelection(): FieldNode {
  const leaf = (value: string): FieldNode => ({ kind: Kind.FIELD, name: { kind: Kind.NAME, value } });
  return {
    kind: Kind.FIELD,
    alias: { kind: Kind.NAME, value: HISTORY_KEY },
    name: { kind: Kind.NAME, value: "statusHistory" },
    selectionSet: { kind: Kind.SELECTION_SET, selections: [leaf("status"), leaf("reason"), leaf("at")] },
  };
}
