/**
 * The app's GraphQL client: fetch for queries and mutations, graphql-ws for the subscription.
 * Each request carries a fresh DPoP proof of this browser's key and `x-device-id`; the access token
 * is refreshed silently (rotating refresh token) before it expires or once after UNAUTHENTICATED.
 * Apollo Client was left out on purpose: the app needs no normalized cache, and per-request proofs,
 * one refresh in flight and typed errors are simpler as these ~150 lines than as links.
 */
import { createClient, type Client } from "graphql-ws";
import { thisDevice } from "./device.ts";
import { ApiError } from "./errors.ts";
import { RefreshSession, type AuthPayload, type Operation, type UserSummary } from "./operations.ts";

export const GRAPHQL_PATH = "/graphql";
const SESSION_KEY = "vaultpay.session";
/** Refresh this long before the access token's expiry, so a request never carries a dying token. */
const REFRESH_AHEAD_MS = 60_000;
const REQUEST_TIMEOUT_MS = 20_000;

export interface Session {
  accessToken: string;
  /** Bound to this browser's key: useless without it, which the key's non-extractability keeps here. */
  refreshToken: string;
  accessTokenExpiresAt: string;
  user: UserSummary;
}

type Listener = (session: Session | undefined) => void;
const listeners = new Set<Listener>();
let session: Session | undefined = readSession();
let refreshing: Promise<Session> | undefined;

function readSession(): Session | undefined {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    return raw ? (JSON.parse(raw) as Session) : undefined;
  } catch {
    return undefined;
  }
}

export function currentSession(): Session | undefined {
  return session;
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function setSession(next: AuthPayload | undefined): void {
  session = next
    ? { accessToken: next.accessToken, refreshToken: next.refreshToken, accessTokenExpiresAt: next.accessTokenExpiresAt, user: next.user }
    : undefined;
  if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else localStorage.removeItem(SESSION_KEY);
  closeSubscriptions();
  for (const listener of listeners) listener(session);
}

export function graphqlUrl(): string {
  return new URL(GRAPHQL_PATH, location.href).toString();
}

interface GraphQLResponse<T> {
  data?: T | null;
  errors?: Array<{ message: string; extensions?: { code?: string; retryAfterSeconds?: number; reason?: string } }>;
}

function toApiError(body: GraphQLResponse<unknown>): ApiError | undefined {
  const first = body.errors?.[0];
  if (!first) return undefined;
  const extensions = first.extensions ?? {};
  return new ApiError(extensions.code ?? "INTERNAL", first.message, extensions.retryAfterSeconds, extensions.reason);
}

async function post<T>(document: string, variables: unknown, accessToken: string | undefined, correlationId?: string): Promise<T> {
  const device = await thisDevice();
  const htu = graphqlUrl();
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-device-id": device.label,
    dpop: await device.proof({ htm: "POST", htu, ...(accessToken ? { accessToken } : {}) }),
  };
  if (accessToken) headers.authorization = `DPoP ${accessToken}`;
  // Ours when the page wants to quote it (a transfer's reference); the gateway makes one otherwise.
  if (correlationId) headers["x-correlation-id"] = correlationId;
  let response: Response;
  try {
    response = await fetch(htu, {
      method: "POST",
      headers,
      body: JSON.stringify({ query: document, variables }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch {
    throw new ApiError("NETWORK", "network error");
  }
  let body: GraphQLResponse<T>;
  try {
    body = (await response.json()) as GraphQLResponse<T>;
  } catch {
    throw new ApiError(
      response.status === 429 ? "RATE_LIMITED" : response.status >= 500 ? "UNAVAILABLE" : "INTERNAL",
      `HTTP ${response.status}`,
    );
  }
  const error = toApiError(body);
  if (error) throw error;
  if (!body.data) throw new ApiError("INTERNAL", "no data");
  return body.data;
}

/** One refresh at a time: two requests finding the token stale share it (the token rotates). */
function refresh(): Promise<Session> {
  refreshing ??= (async () => {
    const stale = session;
    if (!stale) throw new ApiError("SESSION_EXPIRED", "no session");
    try {
      const device = await thisDevice();
      const data = await post<{ refreshSession: AuthPayload }>(
        RefreshSession.document,
        { refreshToken: stale.refreshToken, deviceId: device.label },
        undefined,
      );
      setSession(data.refreshSession);
      return session!;
    } catch (error) {
      if (error instanceof ApiError && ["UNAUTHENTICATED", "NOT_FOUND", "BAD_USER_INPUT"].includes(error.code)) {
        setSession(undefined);
        throw new ApiError("SESSION_EXPIRED", error.message);
      }
      throw error;
    }
  })().finally(() => {
    refreshing = undefined;
  });
  return refreshing;
}

async function freshAccessToken(): Promise<string | undefined> {
  if (!session) return undefined;
  if (Date.parse(session.accessTokenExpiresAt) - Date.now() < REFRESH_AHEAD_MS) return (await refresh()).accessToken;
  return session.accessToken;
}

/**
 * Runs one operation with this browser's session (if any); errors are ApiError. `correlationId`
 * names the request (and every event it causes) in the audit trail.
 */
export async function request<TData, TVariables>(
  operation: Operation<TData, TVariables>,
  variables: TVariables,
  options: { correlationId?: string } = {},
): Promise<TData> {
  const token = await freshAccessToken();
  const { correlationId } = options;
  try {
    return await post<TData>(operation.document, variables, token, correlationId);
  } catch (error) {
    // The token may have been revoked or expired in between: one silent refresh, then give up.
    if (token && error instanceof ApiError && error.code === "UNAUTHENTICATED" && session) {
      const renewed = await refresh();
      return post<TData>(operation.document, variables, renewed.accessToken, correlationId);
    }
    throw error;
  }
}

let wsClient: Client | undefined;

function subscriptions(): Client {
  wsClient ??= createClient({
    url: graphqlUrl().replace(/^http/, "ws"),
    lazy: true,
    retryAttempts: 5,
    // Made when each connection opens: the token may have been refreshed since the last one.
    connectionParams: async () => {
      const token = await freshAccessToken();
      const device = await thisDevice();
      if (!token) throw new ApiError("SESSION_EXPIRED", "no session");
      return { authorization: `DPoP ${token}`, dpop: await device.proof({ htm: "GET", htu: graphqlUrl(), accessToken: token }) };
    },
  });
  return wsClient;
}

function closeSubscriptions(): void {
  void wsClient?.dispose();
  wsClient = undefined;
}

/** Subscribes; returns the function that stops it. */
export function subscribe<TData, TVariables>(
  operation: Operation<TData, TVariables>,
  variables: TVariables,
  handlers: { next: (data: TData) => void; error: (error: ApiError) => void; complete?: () => void },
): () => void {
  return subscriptions().subscribe<TData>(
    { query: operation.document, variables: variables as Record<string, unknown> },
    {
      next: (result) => {
        const error = toApiError(result as GraphQLResponse<unknown>);
        if (error) handlers.error(error);
        else if (result.data) handlers.next(result.data);
      },
      // graphql-ws hands over the server's errors as an array, a closed socket as an event.
      error: (error) =>
        handlers.error(
          (Array.isArray(error) && toApiError({ errors: error as GraphQLResponse<unknown>["errors"] })) ||
            new ApiError("NETWORK", "subscription closed"),
        ),
      complete: () => handlers.complete?.(),
    },
  );
}
