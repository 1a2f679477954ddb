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
  getOperationAST,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from "graphql";
import type { SubscribePayload } from "graphql-ws";
import { useServer } from "graphql-ws/use/ws";
import { WebSocketServer } from "ws";
import { runWithContext, toGraphQLError, type Logger } from "@vaultpay/kit";
import { DocumentCache } from "./documents.ts";
import { checkBeforeParsing, checkedVariables, resolveOperation } from "./door.ts";
import { enforceLimits, measureOperation, type OperationLimits } from "./limits.ts";
import { permissions } from "./permissions.ts";
import { authenticate, type GatewayRequestContext, type SecurityOptions } from "./security.ts";
import { authorizeFields, selectedFields } from "./shield.ts";
import { HISTORY_KEY, STATUS_QUERY, snapshotPlan } from "./snapshot-query.ts";
import { StatusInbox, type StatusFeed } from "./status-feed.ts";
import { SubscriptionProgress, type StatusChange } from "./subscription-state.ts";

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
function revive(
  errors: ReadonlyArray<{ message: string; extensions?: Record<string, unknown>; path?: ReadonlyArray<string | number> }>,
): GraphQLError[] {
  return errors.map((error) => new GraphQLError(error.message, { extensions: error.extensions ?? {}, path: error.path }));
}

type RunQuery = (
  context: GatewayRequestContext,
  query: string,
  variables: Record<string, unknown>,
) => Promise<ExecutionResult<{ transfer?: Record<string, unknown> | null }>>;

interface StreamDeps {
  run: RunQuery;
  feed: StatusFeed;
  recheckMs: number;
  maxLifetimeMs: number;
}

/**
 * One subscription: what already happened (the history, each change with the transfer as it is
 * now), then each new status until the transfer ends or the subscription's lifetime does.
 */
async function* transferStatusChanged(args: ExecutionArgs, state: ConnectionState, deps: StreamDeps): AsyncGenerator<ExecutionResult> {
  const plan = snapshotPlan(args);
  const progress = SubscriptionProgress.of(plan.root);
  const correlationId = randomUUID();
  const ask = (query: string, variables: Record<string, unknown>) =>
    runWithContext({ correlationId, actor: { userId: state.context.caller?.userId } }, () => deps.run(state.context, query, variables));
  // Listening (and NATS told so) before the first read: a change while it is read waits in the inbox.
  const inbox = new StatusInbox(deps.feed, plan.transferId);
  const deadline = Date.now() + deps.maxLifetimeMs;
  try {
    await inbox.ready;
    const snapshot = await ask(plan.query, plan.variables);
    if (snapshot.errors?.length || !snapshot.data?.transfer) {
      yield {
        errors: snapshot.errors?.length
          ? revive(snapshot.errors)
          : [new GraphQLError("Transfer not found", { extensions: { code: "NOT_FOUND" } })],
      };
      return;
    }
    const first = withoutHistory(snapshot.data.transfer);
    let transfer = first.transfer;
    for (const change of first.history) yield progress.payload(transfer, change);
    while (!progress.finished && Date.now() < deadline) {
      const change = await nextChange(inbox, progress, deps.recheckMs, () => ask(STATUS_QUERY, { id: plan.transferId }));
      if (!change) continue;
      // Only a selection with fields that move besides the status is read again; the status
      // fields come from the change, and a transfer's owner, amount and payee never change.
      if (progress.refreshes) {
        const fresh = await ask(plan.query, plan.variables);
        if (fresh.errors?.length || !fresh.data?.transfer) {
          yield { errors: revive(fresh.errors ?? []) };
          return;
        }
        transfer = withoutHistory(fresh.data.transfer).transfer;
      }
      yield progress.payload(transfer, change);
    }
  } finally {
    inbox.close();
  }
}

/** The snapshot's transfer as the subscriber selected it, and the history the gateway asked beside it. */
function withoutHistory(snapshot: Record<string, unknown>): { transfer: Record<string, unknown>; history: StatusChange[] } {
  const { [HISTORY_KEY]: history, ...transfer } = snapshot;
  return { transfer, history: history as StatusChange[] };
}

/** The next change to report: from the feed, or, when it stayed silent for recheckMs, from the graph in case an event was missed. */
async function nextChange(
  inbox: StatusInbox,
  progress: SubscriptionProgress,
  recheckMs: number,
  readHistory: () => ReturnType<RunQuery>,
): Promise<StatusChange | undefined> {
  const event = await inbox.next(recheckMs);
  if (event) return progress.isNew(event.status) ? { status: event.status, reason: event.failureReason, at: event.changedAt } : undefined;
  const current = await readHistory();
  return progress.nextIn((current.data?.transfer?.statusHistory ?? []) as StatusChange[]);
}

/**
 * Whether a Subscribe message may start: the same door, limits and shield rules as HTTP, and a
 * slot among the connection's subscriptions. Errors for the client, or the execution args.
 */
async function admitSubscription(
  options: SubscriptionOptions,
  clientError: (error: unknown) => GraphQLError,
  documents: DocumentCache,
  state: ConnectionState,
  id: string,
  payload: SubscribePayload,
): Promise<readonly GraphQLError[] | ExecutionArgs> {
  const maxPerConnection = options.maxSubscriptionsPerConnection ?? 20;
  const schema = options.schema();
  if (!schema) return [new GraphQLError("Gateway is starting", { extensions: { code: "INTERNAL" } })];
  // The same door as HTTP: metered per address and capped before parsing.
  const { rateLimits, documentLimits } = options.security;
  try {
    await rateLimits.request(state.context.ip);
    checkBeforeParsing({ query: payload.query, variables: payload.variables }, documentLimits);
  } catch (error) {
    return [clientError(error)];
  }
  const parsed = documents.get(schema, payload.query, documentLimits.maxDocumentTokens);
  if (parsed.errors) return parsed.errors.map(clientError);
  const { document } = parsed;
  let operation: OperationDefinitionNode;
  let variables: Record<string, unknown>;
  try {
    operation = resolveOperation(document, payload.operationName);
    variables = checkedVariables(schema, document, operation, payload.variables);
  } catch (error) {
    return [clientError(error)];
  }
  if (operation.operation !== "subscription") {
    return [
      new GraphQLError("Only subscriptions are served over WebSocket; send queries and mutations over HTTP", {
        extensions: { code: "BAD_USER_INPUT" },
      }),
    ];
  }
  // Checked and reserved with no await in between: concurrent Subscribe messages cannot all pass.
  if (state.active.size >= maxPerConnection) {
    return [
      new GraphQLError(`At most ${maxPerConnection} subscriptions per connection`, {
        extensions: { code: "RATE_LIMITED", retryAfterSeconds: 60 },
      }),
    ];
  }
  state.active.add(id);
  try {
    enforceLimits(measureOperation(document, operation), options.limits);
    await authorizeFields({
      schema,
      fields: selectedFields(schema, document, operation, variables),
      context: { ...state.context },
      permissions,
    });
    // The connection's state rides along as the context, so subscribe() can count and authenticate.
    return { schema, document, operationName: payload.operationName ?? null, variableValues: variables, contextValue: state };
  } catch (error) {
    state.active.delete(id);
    return [clientError(error)];
  }
}

/**
 * A connection's state when it may open: an authenticated caller (with a DPoP proof when the token
 * is bound) under the per-user connection cap, counted in `connectionsByUser`; undefined otherwise.
 */
async function admitConnection(
  options: SubscriptionOptions,
  connectionsByUser: Map<string, number>,
  params: Record<string, unknown> | undefined,
  request: http.IncomingMessage,
): Promise<ConnectionState | undefined> {
  const authorization = typeof params?.authorization === "string" ? params.authorization : undefined;
  // Browsers cannot set headers on a WebSocket: the proof rides in connectionParams, made for
  // the upgrade request (htm GET, htu the http URL of /graphql), checked once per connection.
  const proof = typeof params?.dpop === "string" ? params.dpop : undefined;
  try {
    const { caller, provenDeviceKey } = await authenticate(options.security, authorization, {
      proof,
      htm: "GET",
      htu: options.htuOf(request),
    });
    if (!caller) return undefined;
    const open = connectionsByUser.get(caller.userId) ?? 0;
    if (open >= (options.maxConnectionsPerUser ?? 10)) {
      options.logger.info({ userId: caller.userId }, "subscription connection refused: too many open");
      return undefined;
    }
    connectionsByUser.set(caller.userId, open + 1);
    return {
      context: { caller, authorization, provenDeviceKey, ip: options.clientOf(request), production: options.production },
      active: new Set(),
    };
  } catch (error) {
    options.logger.info({ err: error }, "subscription connection refused");
    return undefined;
  }
}

export function startSubscriptionServer(options: SubscriptionOptions) {
  const { apollo, feed, logger } = options;
  const recheckMs = options.recheckMs ?? 5_000;
  const maxLifetimeMs = options.maxLifetimeMs ?? 60 * 60_000;
  const connectionsByUser = new Map<string, number>();
  /** An error as graphql-ws sends it: the same mapping as HTTP (kit), logged when unexpected. */
  const clientError = (error: unknown): GraphQLError => {
    const { error: mapped, internal } = toGraphQLError(error, { hideSchemaDetails: !options.introspection, http: false });
    if (internal) logger.error({ err: error }, "unexpected error in a subscription");
    return mapped;
  };
  const wss = new WebSocketServer({ server: options.server, path: "/graphql", maxPayload: 64 * 1024 });
  const documents = new DocumentCache();

  const run: RunQuery = async (context, query, variables) => {
    const response = await apollo.executeOperation({ query, variables }, { contextValue: { ...context } });
    if (response.body.kind !== "single") throw new Error("unexpected incremental response");
    return response.body.singleResult as ExecutionResult<{ transfer?: Record<string, unknown> | null }>;
  };
  const timing = { recheckMs, maxLifetimeMs };

  const server = useServer<Record<string, unknown>, { state?: ConnectionState }>(
    {
      schema: () => options.schema()!,
      onConnect: async (ctx) => {
        const state = await admitConnection(options, connectionsByUser, ctx.connectionParams, ctx.extra.request as http.IncomingMessage);
        if (state) ctx.extra.state = state;
        return state !== undefined;
      },
      onClose: (ctx) => {
        const userId = ctx.extra.state?.context.caller?.userId;
        if (!userId) return;
        const open = (connectionsByUser.get(userId) ?? 1) - 1;
        if (open > 0) connectionsByUser.set(userId, open);
        else connectionsByUser.delete(userId);
      },
      onSubscribe: (ctx, id, payload) => admitSubscription(options, clientError, documents, ctx.extra.state!, id, payload),
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
        return transferStatusChanged(args, args.contextValue as ConnectionState, { run, feed, ...timing });
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
