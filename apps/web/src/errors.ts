/**
 * Every error code the API answers with (API.md, packages/kit/src/errors.ts), and the app's own
 * (NETWORK, SESSION_EXPIRED), as one sentence a person understands. One table, read by every page.
 */
export class ApiError extends Error {
  readonly code: string;
  readonly serverMessage: string;
  readonly retryAfterSeconds?: number;
  readonly reason?: string;

  constructor(code: string, serverMessage: string, retryAfterSeconds?: number, reason?: string) {
    super(serverMessage);
    this.code = code;
    this.serverMessage = serverMessage;
    this.retryAfterSeconds = retryAfterSeconds;
    this.reason = reason;
  }
}

const SENTENCES: Record<string, string> = {
  UNAUTHENTICATED: "Your session has ended. Please sign in again.",
  SESSION_EXPIRED: "Your session has expired. Please sign in again.",
  FORBIDDEN: "You are not allowed to do that.",
  NOT_FOUND: "We could not find that. Check the details and try again.",
  RATE_LIMITED: "Too many attempts. Please wait before trying again.",
  CONFLICT: "That was already done, or clashes with something that was (for example, you already have an account of this type).",
  INSUFFICIENT_FUNDS: "There is not enough money in this account for that transfer.",
  UNAVAILABLE: "VaultPay is briefly unavailable. Please try again in a moment.",
  INTERNAL: "Something went wrong on our side. Please try again; if it keeps happening, contact support.",
  NETWORK: "We could not reach VaultPay. Check your connection and try again.",
  BAD_REQUEST: "The app sent a request VaultPay could not read. Please reload the page.",
  GRAPHQL_PARSE_FAILED: "The app sent a request VaultPay could not read. Please reload the page.",
  GRAPHQL_VALIDATION_FAILED: "This version of the app is out of date. Please reload the page.",
  // The app never sends persisted queries or ambiguous documents; should one arrive, reload helps.
  PERSISTED_QUERY_NOT_FOUND: "This version of the app is out of date. Please reload the page.",
  PERSISTED_QUERY_NOT_SUPPORTED: "This version of the app is out of date. Please reload the page.",
  OPERATION_RESOLUTION_FAILURE: "The app sent a request VaultPay could not read. Please reload the page.",
};

/** Codes whose server message is written for the person (what exactly is wrong with the input). */
const SERVER_MESSAGE_SHOWN = new Set(["BAD_USER_INPUT"]);

export function sentenceFor(error: unknown): string {
  if (!(error instanceof ApiError)) return SENTENCES.INTERNAL!;
  if (SERVER_MESSAGE_SHOWN.has(error.code)) return error.serverMessage.endsWith(".") ? error.serverMessage : `${error.serverMessage}.`;
  return SENTENCES[error.code] ?? SENTENCES.INTERNAL!;
}

/** Whether trying again later can help (the page offers a retry or counts down). */
export function isRetryable(error: unknown): boolean {
  return error instanceof ApiError && ["RATE_LIMITED", "UNAVAILABLE", "NETWORK", "INTERNAL"].includes(error.code);
}

/** Whether the person must sign in again (the app drops the session). */
export function endsSession(error: unknown): boolean {
  return error instanceof ApiError && (error.code === "SESSION_EXPIRED" || error.code === "UNAUTHENTICATED");
}

export const ERROR_CODES = Object.keys(SENTENCES);
