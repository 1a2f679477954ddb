/**
 * transferStatusChanged over graphql-ws on /graphql. @apollo/gateway cannot execute subscriptions,
 * so the gateway serves them itself: the same authentication, limits and shield rules as HTTP; the
 * feed of `transaction.status.changed` events from NATS; and each payload resolved through the
 * federated graph as a `transfer(id)` query with the subscriber's own token, so every field
 * (fromAccount, fraudCheck, …) works and ownership is checked by the owning subgraph each time.
 */
import { randomUUID } from "node:crypto";
import type http from "node:http";
import type { ApolloServer } from "@apollo/server";
import {
  GraphQLError,
  Kind,
  getArgumentValues,
  getOperationAST,
  parse,
  print,
  validate,
  visit,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type FieldNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from "graphql";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import { isTerminalStatus, parseEvent, statusRank, type EventData, type NatsConnection, type TransferStatus } from "@vaultpay/events";
import { runWithContext, toGraphQLError, type Logger } from "@vaultpay/kit";
import { checkBeforeParsing, checkedVariables, resolveOperation } from "./door.ts";
import { enforceLimits, measureOperation, type OperationLimits } from "./limits.ts";
import { permissions } from "./permissions.ts";
import { authenticate, type GatewayRequestContext, type SecurityOptions } from "./security.ts";
import { authorizeFields, selectedFields } from "./shield.ts";

type StatusEvent = EventData<"transaction.status.changed">;
/** One entry of Transfer.statusHistory as the graph answers it. */
type StatusChange = { status: TransferStatus; reason: string | null; at: string };

/** One NATS subscription for the whole gateway, fanned out to subscribers by transfer id. */
export class StatusFeed {
  private readonly listeners = new Map<string, Set<(event: StatusEvent) => void>>();

  constructor(nc: NatsConnection, logger: Logger) {
    // Core NATS sees JetStream's messages as they are stored; a missed one is caught by re-checks.
    const subscription = nc.subscribe("transaction.status.changed");
    void (async () => {
      for await (const message of subscription) {
        try {
          const event = parseEvent(message.json());
          if (event.type !== "transaction.status.changed") continue;
          for (const listener of this.listeners.get(event.data.transferId) ?? []) listener(event.data);
        } catch (error) {
          logger.warn({ err: error }, "unreadable status event");
        }
      }
    })();
  }

  listen(transferId: string, listener: (event: StatusEvent) => void): () => void {
    const set = this.listeners.get(transferId) ?? new Set();
    set.add(listener);
    this.listeners.set(transferId, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(transferId);
    };
  }
}

export interface SubscriptionOptions {
  server: http.Server;
  apollo: ApolloServer<GatewayRequestContext>;
  schema: () => GraphQLSchema | undefined;
  feed: StatusFeed;
  security: Pick<SecurityOptions, "verifyToken" | "redis" | "rateLimits" | "documentLimits">;
  limits: OperationLimits;
  production: boolean;
  /** Off: no "Did you mean …?" hints in errors, as on HTTP. */
  introspection: boolean;
  logger: Logger;
  /** The http URL of /graphql a connection's DPoP proof must name as htu. */
  htuOf: (request: http.IncomingMessage) => string;
  /** The client's address behind trusted proxies (client-address.ts), for rate limits. */
  clientOf: (request: http.IncomingMessage) => string;
  /** Without a change, the transfer's status is re-read this often (a missed event is caught). */
  recheckMs?: number;
  /** Longest life of one subscription; the client resubscribes after it. */
  maxLifetimeMs?: number;
  maxSubscriptionsPerConnection?: number;
  /** Open graphql-ws connections one user may hold on this gateway. */
  maxConnectionsPerUser?: number;
}

interface ConnectionState {
  context: GatewayRequestContext;
  /** Ids of this connection's live subscriptions; a slot is taken in onSubscribe, synchronously. */
  active: Set<string>;
}


/** Errors already formatted by Apollo (plain objects) as the GraphQLError instances graphql-ws sends. */
function revive(errors: ReadonlyArray<{ message: string; extensions?: Record<string, unknown>; path?: ReadonlyArray<string | number> }>): GraphQLError[] {
  return errors.map((error) => new GraphQLError(error.message, { extensions: error.extensions ?? {}, path: error.path }));
}

/** The subscription's selection, asked as a query: `transfer(id: $vpTransferId) { …same fields… }`. */
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
          arguments: [{ kind: Kind.ARGUMENT, name: { kind: Kind.NAME, value: "id" }, value: { kind: Kind.VARIABLE, name: { kind: Kind.NAME, value: "vpTransferId" } } }],
          selectionSet: root.selectionSet,
        },
      ],
    },
  };
  return print({ kind: Kind.DOCUMENT, definitions: [query, ...fragments] });
}

const STATUS_QUERY = `query TransferStatusHistory($id: ID!) { transfer(id: $id) { status statusHistory { status reason at } } }`;

export function startSubscriptionServer(options: SubscriptionOptions) {
  const { apollo, feed, logger } = options;
  const recheckMs = options.recheckMs ?? 5_000;
  const maxLifetimeMs = options.maxLifetimeMs ?? 60 * 60_000;
  const maxPerConnection = options.maxSubscriptionsPerConnection ?? 20;
  const maxConnectionsPerUser = options.maxConnectionsPerUser ?? 10;
  const connectionsByUser = new Map<string, number>();
  /** An error as graphql-ws sends it: the same mapping as HTTP (kit), logged when unexpected. */
  const clientError = (error: unknown): GraphQLError => {
    const { error: mapped, internal } = toGraphQLError(error, { hideSchemaDetails: !options.introspection, http: false });
    if (internal) logger.error({ err: error }, "unexpected error in a subscription");
    return mapped;
  };
  const wss = new WebSocketServer({ server: options.server, path: "/graphql", maxPayload: 64 * 1024 });

  async function run(context: GatewayRequestContext, query: string, variables: Record<string, unknown>) {
    const response = await apollo.executeOperation({ query, variables }, { contextValue: { ...context } });
    if (response.body.kind !== "single") throw new Error("unexpected incremental response");
    return response.body.singleResult as ExecutionResult<{ transfer?: Record<string, unknown> | null }>;
  }

  async function* transferStatusChanged(args: ExecutionArgs, state: ConnectionState): AsyncGenerator<ExecutionResult> {
    const operation = getOperationAST(args.document, args.operationName)!;
    const root = operation.selectionSet.selections[0] as FieldNode;
    const responseKey = root.alias?.value ?? root.name.value;
    const field = args.schema.getSubscriptionType()!.getFields()[root.name.value]!;
    const { id } = getArgumentValues(field, root, args.variableValues ?? undefined) as { id: string };
    const query = snapshotQuery(args.document, operation, root);
    const variables = { ...(args.variableValues ?? {}), vpTransferId: id };
    // Fields of the payload that the event itself answers, by response key.
    const overlays = root.selectionSet!.selections.filter((s): s is FieldNode => s.kind === Kind.FIELD).map((s) => ({ key: s.alias?.value ?? s.name.value, name: s.name.value }));
    const correlationId = randomUUID();
    const inContext = <T>(fn: () => Promise<T>) => runWithContext({ correlationId, actor: { userId: state.context.caller?.userId } }, fn);

    const queue: StatusEvent[] = [];
    let wake: (() => void) | undefined;
    const unlisten = feed.listen(id, (event) => {
      queue.push(event);
      wake?.();
    });
    const deadline = Date.now() + maxLifetimeMs;
    let lastRank = -1;

    const payload = (transfer: Record<string, unknown>, change: StatusChange) => {
      const data = { ...transfer };
      for (const { key, name } of overlays) {
        if (name === "status") data[key] = change.status;
        else if (name === "failureReason") data[key] = isTerminalStatus(change.status) ? change.reason : null;
        else if (name === "updatedAt") data[key] = change.at;
      }
      lastRank = statusRank(change.status);
      return { data: { [responseKey]: data } };
    };

    try {
      const history = await inContext(() => run(state.context, STATUS_QUERY, { id }));
      if (history.errors?.length || !history.data?.transfer) {
        yield { errors: history.errors?.length ? revive(history.errors) : [new GraphQLError("Transfer not found", { extensions: { code: "NOT_FOUND" } })] };
        return;
      }
      const snapshot = await inContext(() => run(state.context, query, variables));
      if (snapshot.errors?.length || !snapshot.data?.transfer) {
        yield { errors: revive(snapshot.errors ?? []) };
        return;
      }
      // What already happened, in order, then the live changes.
      for (const change of history.data.transfer.statusHistory as Array<StatusChange>) {
        yield payload(snapshot.data.transfer, change);
      }
      while (lastRank < 2 && Date.now() < deadline) {
        if (queue.length === 0) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            setTimeout(resolve, recheckMs);
          });
          wake = undefined;
        }
        let change: StatusChange | undefined;
        const event = queue.shift();
        if (event) {
          if (statusRank(event.status) <= lastRank) continue;
          change = { status: event.status, reason: event.failureReason, at: event.changedAt };
        } else {
          // Nothing heard for a while: ask, in case an event was missed.
          const current = await inContext(() => run(state.context, STATUS_QUERY, { id }));
          const changes = (current.data?.transfer?.statusHistory ?? []) as Array<StatusChange>;
          change = changes.find((candidate) => statusRank(candidate.status) > lastRank);
          if (!change) continue;
        }
        const fresh = await inContext(() => run(state.context, query, variables));
        if (fresh.errors?.length || !fresh.data?.transfer) {
          yield { errors: revive(fresh.errors ?? []) };
          return;
        }
        yield payload(fresh.data.transfer, change);
      }
    } finally {
      unlisten();
    }
  }

  const server = useServer<Record<string, unknown>, { state?: ConnectionState }>(
    {
      schema: () => options.schema()!,
      onConnect: async (ctx) => {
        const authorization = typeof ctx.connectionParams?.authorization === "string" ? ctx.connectionParams.authorization : undefined;
        const request = ctx.extra.request as http.IncomingMessage;
        // Browsers cannot set headers on a WebSocket: the proof rides in connectionParams, made for
        // the upgrade request (htm GET, htu the http URL of /graphql), checked once per connection.
        const proof = typeof ctx.connectionParams?.dpop === "string" ? ctx.connectionParams.dpop : undefined;
        try {
          const { caller, provenDeviceKey } = await authenticate(options.security, authorization, { proof, htm: "GET", htu: options.htuOf(request) });
          if (!caller) return false;
          const open = connectionsByUser.get(caller.userId) ?? 0;
          if (open >= maxConnectionsPerUser) {
            logger.info({ userId: caller.userId }, "subscription connection refused: too many open");
            return false;
          }
          connectionsByUser.set(caller.userId, open + 1);
          ctx.extra.state = {
            context: { caller, authorization, provenDeviceKey, ip: options.clientOf(request), production: options.production },
            active: new Set(),
          };
          return true;
        } catch (error) {
          logger.info({ err: error }, "subscription connection refused");
          return false;
        }
      },
      onClose: (ctx) => {
        const userId = ctx.extra.state?.context.caller?.userId;
        if (!userId) return;
        const open = (connectionsByUser.get(userId) ?? 1) - 1;
        if (open > 0) connectionsByUser.set(userId, open);
        else connectionsByUser.delete(userId);
      },
      onSubscribe: async (ctx, id, payload) => {
        const state = ctx.extra.state!;
        const schema = options.schema();
        if (!schema) return [new GraphQLError("Gateway is starting", { extensions: { code: "INTERNAL" } })];
        // The same door as HTTP: metered per address and capped before parsing.
        const { rateLimits, documentLimits } = options.security;
        let document: DocumentNode;
        try {
          await rateLimits.request(state.context.ip);
          checkBeforeParsing({ query: payload.query, variables: payload.variables }, documentLimits);
        } catch (error) {
          return [clientError(error)];
        }
        try {
          document = parse(payload.query, { maxTokens: documentLimits.maxDocumentTokens });
        } catch (error) {
          return [clientError(new GraphQLError((error as Error).message, { extensions: { code: "GRAPHQL_PARSE_FAILED" } }))];
        }
        const errors = validate(schema, document);
        if (errors.length > 0) return errors.map((error) => clientError(new GraphQLError(error.message, { nodes: error.nodes, extensions: { code: "GRAPHQL_VALIDATION_FAILED" } })));
        let operation: OperationDefinitionNode;
        let variables: Record<string, unknown>;
        try {
          operation = resolveOperation(document, payload.operationName);
          variables = checkedVariables(schema, document, operation, payload.variables);
        } catch (error) {
          return [clientError(error)];
        }
        if (operation.operation !== "subscription") {
          return [new GraphQLError("Only subscriptions are served over WebSocket; send queries and mutations over HTTP", { extensions: { code: "BAD_USER_INPUT" } })];
        }
        // Reserved before any await: concurrent Subscribe messages cannot all pass the check.
        if (state.active.size >= maxPerConnection) {
          return [new GraphQLError(`At most ${maxPerConnection} subscriptions per connection`, { extensions: { code: "RATE_LIMITED", retryAfterSeconds: 60 } })];
        }
        state.active.add(id);
        try {
          enforceLimits(measureOperation(document, operation), options.limits);
          await authorizeFields({ schema, fields: selectedFields(schema, document, operation, variables), context: { ...state.context }, permissions });
          // The connection's state rides along as the context, so subscribe() can count and authenticate.
          return { schema, document, operationName: payload.operationName ?? null, variableValues: variables, contextValue: state };
        } catch (error) {
          state.active.delete(id);
          return [clientError(error)];
        }
      },
      onComplete: (ctx, id) => {
        ctx.extra.state?.active.delete(id);
      },
      onError: (ctx, id) => {
        ctx.extra.state?.active.delete(id);
      },
      subscribe: (args) => {
        const operation = getOperationAST(args.document, args.operationName);
        const root = operation?.selectionSet.selections[0];
        if (!operation || root?.kind !== Kind.FIELD || root.name.value !== "transferStatusChanged") {
          return { errors: [new GraphQLError("Unknown subscription", { extensions: { code: "BAD_USER_INPUT" } })] };
        }
        return transferStatusChanged(args, args.contextValue as ConnectionState);
      },
    },
    wss,
  );
  return {
    async stop() {
      await server.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
