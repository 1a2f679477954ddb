import { rule } from "graphql-shield";
import { DomainError, type Caller } from "@vaultpay/kit";
import { allow, type Permissions } from "./shield.ts";

/** What the gateway's rules decide on: the verified caller (or none) and the environment. */
export interface GatewayContext {
  caller?: Caller | undefined;
  production: boolean;
}

export const isAuthenticated = rule({ cache: "contextual" })(async (_parent, _args, context: GatewayContext) =>
  context.caller ? true : new DomainError("UNAUTHENTICATED", "Sign in first"),
);

export const isAdmin = rule({ cache: "contextual" })(async (_parent, _args, context: GatewayContext) => {
  if (!context.caller) return new DomainError("UNAUTHENTICATED", "Sign in first");
  return context.caller.role === "ADMIN" ? true : new DomainError("FORBIDDEN", "Administrators only");
});

/** Development aids (dev mailbox, introspection, status probes) open outside production only. */
export const outsideProduction = rule({ cache: "contextual" })(async (_parent, _args, context: GatewayContext) =>
  context.production ? new DomainError("FORBIDDEN", "Not available in production") : true,
);

const outsideProductionOrAdmin = rule({ cache: "contextual" })(async (_parent, _args, context: GatewayContext) =>
  !context.production || context.caller?.role === "ADMIN" ? true : new DomainError("FORBIDDEN", "Administrators only"),
);

/**
 * Who may call what, field by field (shared/API.md). Deny by default: a root field missing here is
 * refused, so a new operation is closed until someone decides who may use it. Object types are
 * open at this layer because who may see which object depends on its data (owner, role) — the
 * owning subgraph enforces that, with NOT_FOUND for others' objects.
 */
export const permissions: Permissions = {
  Query: {
    me: isAuthenticated,
    myAccounts: isAuthenticated,
    account: isAuthenticated,
    transfer: isAuthenticated,
    myTransfers: isAuthenticated,
    users: isAdmin,
    fraudChecks: isAdmin,
    auditLog: isAdmin,
    verifyAuditChain: isAdmin,
    deadLetters: isAdmin,
    devMailbox: outsideProduction,
    __schema: outsideProduction,
    __type: outsideProduction,
    authStatus: outsideProductionOrAdmin,
    accountsStatus: outsideProductionOrAdmin,
    transactionsStatus: outsideProductionOrAdmin,
    fraudStatus: outsideProductionOrAdmin,
    auditStatus: outsideProductionOrAdmin,
  },
  Mutation: {
    register: allow,
    login: allow,
    verifyOtp: allow,
    refreshSession: allow,
    logout: isAuthenticated,
    openAccount: isAuthenticated,
    initiateTransfer: isAuthenticated,
    depositFunds: isAdmin,
    replayDeadLetters: isAdmin,
  },
  Subscription: {
    transferStatusChanged: isAuthenticated,
  },
  ...Object.fromEntries(
    [
      "User",
      "Device",
      "OtpChallenge",
      "AuthPayload",
      "Account",
      "Money",
      "Transfer",
      "TransferEdge",
      "TransferConnection",
      "PageInfo",
      "TransferStatusChange",
      "FraudCheck",
      "AuditRecord",
      "AuditVerification",
      "DeadLetter",
      "DeadLetterReplay",
      "DevMessage",
      "ServiceStatus",
      // Introspection's own types, reachable only through __schema/__type above.
      "__Schema",
      "__Type",
      "__Field",
      "__InputValue",
      "__EnumValue",
      "__Directive",
    ].map((type) => [type, { "*": allow }]),
  ),
};

/** Mutations that guess at secrets (passwords, OTPs, refresh tokens) get the stricter rate limit. */
export const CREDENTIAL_FIELDS = new Set(["Mutation.register", "Mutation.login", "Mutation.verifyOtp", "Mutation.refreshSession"]);
