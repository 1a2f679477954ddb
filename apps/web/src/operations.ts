/**
 * Every GraphQL operation the app sends, typed by hand against the public contract (API.md and the
 * README's additions). test/web-operations.test.ts validates each document against
 * test/fixtures/api-contract.graphql and api-additions.graphql, and checks the declared result fields are the selected ones, so a contract change breaks a test,
 * not a customer's screen.
 */

/** A document with the types of its result and variables attached (only at compile time). */
export interface Operation<TData, TVariables> {
  readonly name: string;
  readonly document: string;
  /** Never set: carries the types. */
  readonly __types?: (variables: TVariables) => TData;
}

function operation<TData, TVariables = Record<string, never>>(name: string, document: string): Operation<TData, TVariables> {
  return { name, document };
}

export type Role = "CUSTOMER" | "ADMIN";
export type AccountType = "SAVINGS" | "CURRENT";
export type TransferStatus = "PENDING" | "DEBITED" | "COMPLETED" | "FAILED" | "REJECTED";
export type TransferDirection = "SENT" | "RECEIVED";
export const ACCOUNT_TYPES: readonly AccountType[] = ["SAVINGS", "CURRENT"];

export interface Money {
  minor: string;
  currency: string;
}
export interface UserSummary {
  id: string;
  email: string;
  role: Role;
}
export interface Account {
  id: string;
  type: AccountType;
  maskedNumber: string;
  balance: Money;
  status: string;
  createdAt: string;
}
export interface FraudCheck {
  riskScore: number;
  passed: boolean;
  reasons: string[];
  checkedAt: string;
}
export interface Transfer {
  id: string;
  status: TransferStatus;
  amount: Money;
  fromMaskedNumber: string;
  toMaskedNumber: string;
  /** RECEIVED for a transfer paid to this customer (their history lists those beside what they sent). */
  direction: TransferDirection | null;
  failureReason: string | null;
  fraudCheck: FraudCheck | null;
  createdAt: string;
  updatedAt: string;
}
export interface Device {
  id: string;
  label: string | null;
  firstSeenAt: string;
  lastSeenAt: string;
  trusted: boolean;
}
export interface OtpChallenge {
  challengeId: string;
  expiresAt: string;
  channel: string;
}
export interface AuthPayload {
  accessToken: string;
  refreshToken: string;
  accessTokenExpiresAt: string;
  user: UserSummary;
}

const AUTH_PAYLOAD = "accessToken refreshToken accessTokenExpiresAt user { id email role }";
const ACCOUNT = "id type maskedNumber balance { minor currency } status createdAt";
const FRAUD = "riskScore passed reasons checkedAt";
// Not fromAccount: accounts answers it to the sender only, so a received transfer would fail whole.
const TRANSFER = `id status amount { minor currency } fromMaskedNumber toMaskedNumber direction failureReason fraudCheck { ${FRAUD} } createdAt updatedAt`;

export const Register = operation<{ register: OtpChallenge }, { email: string; phone: string; password: string; deviceId: string }>(
  "Register",
  "mutation Register($email: String!, $phone: String!, $password: String!, $deviceId: String!) { register(email: $email, phone: $phone, password: $password, deviceId: $deviceId) { challengeId expiresAt channel } }",
);
export const Login = operation<{ login: OtpChallenge }, { email: string; password: string; deviceId: string }>(
  "Login",
  "mutation Login($email: String!, $password: String!, $deviceId: String!) { login(email: $email, password: $password, deviceId: $deviceId) { challengeId expiresAt channel } }",
);
export const VerifyOtp = operation<{ verifyOtp: AuthPayload }, { challengeId: string; code: string; deviceId: string }>(
  "VerifyOtp",
  `mutation VerifyOtp($challengeId: ID!, $code: String!, $deviceId: String!) { verifyOtp(challengeId: $challengeId, code: $code, deviceId: $deviceId) { ${AUTH_PAYLOAD} } }`,
);
export const RefreshSession = operation<{ refreshSession: AuthPayload }, { refreshToken: string; deviceId: string }>(
  "RefreshSession",
  `mutation RefreshSession($refreshToken: String!, $deviceId: String!) { refreshSession(refreshToken: $refreshToken, deviceId: $deviceId) { ${AUTH_PAYLOAD} } }`,
);
export const Logout = operation<{ logout: boolean }>("Logout", "mutation Logout { logout }");
export const DevMailbox = operation<{ devMailbox: Array<{ code: string | null; sentAt: string }> }, { to: string }>(
  "DevMailbox",
  "query DevMailbox($to: String!) { devMailbox(to: $to) { code sentAt } }",
);

export const Me = operation<{ me: UserSummary & { maskedPhone: string | null; devices: Device[] } }>(
  "Me",
  "query Me { me { id email role maskedPhone devices { id label firstSeenAt lastSeenAt trusted } } }",
);
export const MyAccounts = operation<{ myAccounts: Account[] }>("MyAccounts", `query MyAccounts { myAccounts { ${ACCOUNT} } }`);
export const AccountNumber = operation<{ account: { id: string; number: string } | null }, { id: string }>(
  "AccountNumber",
  "query AccountNumber($id: ID!) { account(id: $id) { id number } }",
);
export const OpenAccount = operation<{ openAccount: Account }, { type: AccountType }>(
  "OpenAccount",
  `mutation OpenAccount($type: AccountType!) { openAccount(type: $type) { ${ACCOUNT} } }`,
);
export const InitiateTransfer = operation<
  { initiateTransfer: Transfer },
  { fromAccountId: string; toAccountNumber: string; amountMinor: string; idempotencyKey: string; note: string | null }
>(
  "InitiateTransfer",
  `mutation InitiateTransfer($fromAccountId: ID!, $toAccountNumber: String!, $amountMinor: MinorUnits!, $idempotencyKey: String!, $note: String) { initiateTransfer(fromAccountId: $fromAccountId, toAccountNumber: $toAccountNumber, amountMinor: $amountMinor, idempotencyKey: $idempotencyKey, note: $note) { ${TRANSFER} } }`,
);
export const TransferById = operation<{ transfer: Transfer | null }, { id: string }>(
  "TransferById",
  `query TransferById($id: ID!) { transfer(id: $id) { ${TRANSFER} } }`,
);
export const MyTransfers = operation<
  { myTransfers: { edges: Array<{ cursor: string; node: Transfer }>; pageInfo: { hasNextPage: boolean; endCursor: string | null } } },
  { first: number; after: string | null; directions: TransferDirection[] }
>(
  "MyTransfers",
  `query MyTransfers($first: Int, $after: String, $directions: [TransferDirection!]!) { myTransfers(first: $first, after: $after, directions: $directions) { edges { cursor node { ${TRANSFER} } } pageInfo { hasNextPage endCursor } } }`,
);
export const TransferStatusChanged = operation<{ transferStatusChanged: Transfer }, { id: string }>(
  "TransferStatusChanged",
  `subscription TransferStatusChanged($id: ID!) { transferStatusChanged(id: $id) { ${TRANSFER} } }`,
);

// Operator (ADMIN) operations: the API refuses them to customers whatever the app shows.
export const DepositFunds = operation<{ depositFunds: Account }, { accountId: string; amountMinor: string; idempotencyKey: string }>(
  "DepositFunds",
  `mutation DepositFunds($accountId: ID!, $amountMinor: MinorUnits!, $idempotencyKey: String!) { depositFunds(accountId: $accountId, amountMinor: $amountMinor, idempotencyKey: $idempotencyKey) { ${ACCOUNT} } }`,
);
export type UserWithAccounts = UserSummary & { accounts: Array<{ id: string; type: AccountType; maskedNumber: string; balance: Money }> };
export const Users = operation<{ users: UserWithAccounts[] }, { first: number; after: string | null }>(
  "Users",
  "query Users($first: Int, $after: String) { users(first: $first, after: $after) { id email role accounts { id type maskedNumber balance { minor currency } } } }",
);
export const FraudChecks = operation<{ fraudChecks: FraudCheck[] }, { onlyFailed: boolean; first: number }>(
  "FraudChecks",
  `query FraudChecks($onlyFailed: Boolean, $first: Int) { fraudChecks(onlyFailed: $onlyFailed, first: $first) { ${FRAUD} } }`,
);
export interface AuditRecord {
  id: string;
  seq: number;
  type: string;
  occurredAt: string;
  correlationId: string | null;
  actorUserId: string | null;
  data: string;
  hash: string;
}
export const AuditLog = operation<{ auditLog: AuditRecord[] }, { correlationId: string | null; first: number; afterSeq: number | null }>(
  "AuditLog",
  "query AuditLog($correlationId: String, $first: Int, $afterSeq: Int) { auditLog(correlationId: $correlationId, first: $first, afterSeq: $afterSeq) { id seq type occurredAt correlationId actorUserId data hash } }",
);
export const VerifyAuditChain = operation<{ verifyAuditChain: { valid: boolean; checked: number; firstBrokenSeq: number | null } }>(
  "VerifyAuditChain",
  "query VerifyAuditChain { verifyAuditChain { valid checked firstBrokenSeq } }",
);

// Additions to the contract since API.md (README "API: additions to the contract").
export interface DeadLetter {
  id: string;
  consumer: string;
  stream: string;
  subject: string;
  eventId: string | null;
  eventType: string | null;
  correlationId: string | null;
  deliveryCount: number;
  lastError: string;
  deadLetteredAt: string;
}
export const DeadLetters = operation<{ deadLetters: DeadLetter[] }, { consumer: string | null; first: number }>(
  "DeadLetters",
  "query DeadLetters($consumer: String, $first: Int) { deadLetters(consumer: $consumer, first: $first) { id consumer stream subject eventId eventType correlationId deliveryCount lastError deadLetteredAt } }",
);
export const ReplayDeadLetters = operation<
  { replayDeadLetters: { replayed: number; remaining: number; auditEventId: string | null } },
  { consumer: string | null; ids: string[] | null }
>(
  "ReplayDeadLetters",
  "mutation ReplayDeadLetters($consumer: String, $ids: [ID!]) { replayDeadLetters(consumer: $consumer, ids: $ids) { replayed remaining auditEventId } }",
);

/** Every operation, for the contract test. */
export const ALL_OPERATIONS: ReadonlyArray<Operation<unknown, unknown>> = [
  Register,
  Login,
  VerifyOtp,
  RefreshSession,
  Logout,
  DevMailbox,
  Me,
  MyAccounts,
  AccountNumber,
  OpenAccount,
  InitiateTransfer,
  TransferById,
  MyTransfers,
  TransferStatusChanged,
  DepositFunds,
  Users,
  FraudChecks,
  AuditLog,
  VerifyAuditChain,
  DeadLetters,
  ReplayDeadLetters,
] as ReadonlyArray<Operation<unknown, unknown>>;
