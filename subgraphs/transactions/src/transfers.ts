/**
 * The transfer and its saga as plain rules: no GraphQL, NATS or Prisma types. The transactions
 * service orchestrates (shared/ARCHITECTURE.md §4); the statuses and their transitions are one
 * table in the event contract (TRANSFER_LIFECYCLE in @vaultpay/events).
 */
import { createHash } from "node:crypto";
import { DomainError, canonicalUuid, isUuid } from "@vaultpay/kit";
import { isValidAccountNumber, normalizeAccountNumber, parseMinorUnits } from "@vaultpay/money";

export { TRANSFER_LIFECYCLE, assertTransition, isTerminalStatus, statusRank, type TransferStatus } from "@vaultpay/events";
export type SagaStep = "DEBIT" | "FRAUD" | "CREDIT" | "REFUND" | "NONE";

export const LIMITS = {
  /** Largest single transfer, in minor units: 1 crore rupees. */
  maxAmountMinor: 1_000_000_000n,
  idempotencyKeyMaxChars: 100,
  noteMaxChars: 140,
  pageSizeMax: 100,
} as const;

export interface TransferRequest {
  fromAccountId: string;
  toAccountNumber: string;
  amountMinor: bigint;
  idempotencyKey: string;
  note: string | null;
}

/** Validates and normalizes what a client asked for; BAD_USER_INPUT names the field. */
export function parseTransferRequest(input: {
  fromAccountId: string;
  toAccountNumber: string;
  amountMinor: unknown;
  idempotencyKey: string;
  note?: string | null | undefined;
}): TransferRequest {
  const bad = (field: string, message: string) => new DomainError("BAD_USER_INPUT", message, { field });
  let amountMinor: bigint;
  try {
    amountMinor = typeof input.amountMinor === "bigint" ? input.amountMinor : parseMinorUnits(input.amountMinor);
  } catch {
    throw bad("amountMinor", "amountMinor must be a whole number of minor units");
  }
  if (amountMinor <= 0n) throw bad("amountMinor", "amountMinor must be positive");
  if (amountMinor > LIMITS.maxAmountMinor) throw bad("amountMinor", `amountMinor must be at most ${LIMITS.maxAmountMinor}`);
  const toAccountNumber = normalizeAccountNumber(input.toAccountNumber);
  if (!isValidAccountNumber(toAccountNumber))
    throw bad("toAccountNumber", "toAccountNumber is not a valid account number (check for a typo)");
  const idempotencyKey = input.idempotencyKey.trim();
  if (idempotencyKey.length === 0 || idempotencyKey.length > LIMITS.idempotencyKeyMaxChars) {
    throw bad("idempotencyKey", `idempotencyKey must be 1 to ${LIMITS.idempotencyKeyMaxChars} characters`);
  }
  const note = input.note?.trim() || null;
  if (note && note.length > LIMITS.noteMaxChars) throw bad("note", `note must be at most ${LIMITS.noteMaxChars} characters`);
  if (!input.fromAccountId || input.fromAccountId.length > 64) throw bad("fromAccountId", "fromAccountId is not an account id");
  // In the stored (lower-case) form: the directory compares it as text, and the request hash must
  // not tell a retry that spells the id in upper case from the request it repeats.
  const fromAccountId = canonicalUuid(input.fromAccountId);
  return { fromAccountId, toAccountNumber, amountMinor, idempotencyKey, note };
}

/**
 * Identifies the body of a request under an idempotency key: the same key with the same body is a
 * retry, with another body a conflict. The destination enters as its blind index (no plaintext).
 */
export function requestHash(request: TransferRequest, toBlindIndex: string): string {
  const canonical = JSON.stringify([request.fromAccountId, toBlindIndex, request.amountMinor.toString(), request.note]);
  return createHash("sha256").update(canonical).digest("hex");
}

/** Opaque page cursors over (createdAt, id), newest first. */
export function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}|${id}`, "utf8").toString("base64url");
}

/** Longer than any cursor encodeCursor makes (24 + 1 + 36 characters, in base64url). */
const MAX_CURSOR_LENGTH = 128;

/**
 * The inverse of encodeCursor, and nothing else: a cursor is opaque to clients, so one that
 * encodeCursor could not have made (an id that is not a uuid, a date not in its exact form or
 * outside what PostgreSQL stores) is refused here rather than reaching the query.
 */
export function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const invalid = () => new DomainError("BAD_USER_INPUT", "after is not a valid cursor", { field: "after" });
  if (cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  const [time, id, ...rest] = Buffer.from(cursor, "base64url").toString("utf8").split("|");
  const createdAt = new Date(time ?? "");
  if (rest.length > 0 || !id || !isUuid(id) || Number.isNaN(createdAt.getTime())) throw invalid();
  // toISOString's own form, years 0000–9999 only (no ±YYYYYY): what PostgreSQL's timestamptz holds.
  if (createdAt.toISOString() !== time || time.length !== 24) throw invalid();
  return { createdAt, id };
}

/** Which way a transfer went, seen from one customer: they sent it, or it was paid to them. */
export type TransferDirection = "SENT" | "RECEIVED";

/**
 * How a viewer may see a transfer, or null when not at all (NOT_FOUND: ids cannot be probed). The
 * sender sees everything. The receiver sees a transfer only once it is COMPLETED — money not yet
 * credited, or a failed or rejected attempt, is the sender's business — and never its failure
 * reasons. An ADMIN sees every transfer; `direction` is null on one that is neither theirs nor to them.
 */
export function viewOf(
  viewer: { userId: string; role: string },
  transfer: { userId: string; toUserId: string; status: string },
): { direction: TransferDirection | null } | null {
  if (transfer.userId === viewer.userId) return { direction: "SENT" };
  if (transfer.toUserId === viewer.userId && transfer.status === "COMPLETED") return { direction: "RECEIVED" };
  return viewer.role === "ADMIN" ? { direction: null } : null;
}

/** A reason (the failure's, a status change's) as a viewer may read it: never the receiver. */
export function reasonSeenAs(direction: TransferDirection | null, reason: string | null): string | null {
  return direction === "RECEIVED" ? null : reason;
}

/**
 * The source account's id as a viewer may read it: not the receiver, who reads fromMaskedNumber.
 * Refused here rather than left to accounts, which answers only fields it owns: `fromAccount { id }`
 * alone never reaches it, and would hand the receiver the sender's internal account id.
 */
export function sourceAccountIdSeenAs(direction: TransferDirection | null, fromAccountId: string): string {
  if (direction === "RECEIVED") throw new DomainError("NOT_FOUND", "Account not found", { field: "fromAccount" });
  return fromAccountId;
}

/** The directions a history lists, each once; an empty list is a client error rather than an empty page. */
export function parseDirections(directions: readonly TransferDirection[] | null | undefined): ReadonlySet<TransferDirection> {
  const wanted = new Set<TransferDirection>(directions ?? ["SENT"]);
  if (wanted.size === 0) throw new DomainError("BAD_USER_INPUT", "directions must name SENT, RECEIVED or both", { field: "directions" });
  return wanted;
}

/**
 * One newest-first list out of several (each newest first, e.g. sent and received): a transfer in
 * more than one (a customer paying their own other account) appears once.
 */
export function mergeNewestFirst<T extends { id: string; createdAt: Date }>(lists: ReadonlyArray<readonly T[]>): T[] {
  const byId = new Map<string, T>();
  for (const list of lists) for (const item of list) byId.set(item.id, item);
  return [...byId.values()].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

export function pageSize(first: number | null | undefined, fallback = 20): number {
  const size = first ?? fallback;
  if (!Number.isInteger(size) || size < 1 || size > LIMITS.pageSizeMax) {
    throw new DomainError("BAD_USER_INPUT", `first must be between 1 and ${LIMITS.pageSizeMax}`, { field: "first" });
  }
  return size;
}

export interface SagaTimings {
  /** How long one attempt of a step may take before its command is sent again. */
  stepTimeoutMs: number;
  /** Commands per step before the step is given up and compensated (refund). */
  maxStepAttempts: number;
}

/**
 * What to do when a step's deadline passes: send its command again, or give up and compensate.
 * A refund is never given up: it is the compensation, retried until accounts answers.
 */
export function onStepTimeout(step: SagaStep, attempts: number, timings: SagaTimings): "retry" | "compensate" {
  if (step === "REFUND" || attempts < timings.maxStepAttempts) return "retry";
  return "compensate";
}

/** Back-off of a step's deadline: doubles per attempt, capped at 8× the base timeout. */
export function stepDeadline(now: Date, attempts: number, timings: SagaTimings): Date {
  return new Date(now.getTime() + attemptMs(attempts, timings));
}

/** The back-off's cap: no attempt of a step has more than this many base timeouts. */
const ATTEMPT_TIMEOUTS_MAX = 8;

/** How long attempt `attempts` of a step has before its deadline. */
function attemptMs(attempts: number, timings: SagaTimings): number {
  return timings.stepTimeoutMs * Math.min(2 ** Math.max(0, attempts - 1), ATTEMPT_TIMEOUTS_MAX);
}

/** The longest any attempt of a step has before its deadline (the back-off's cap). */
export function longestAttemptMs(timings: SagaTimings): number {
  return timings.stepTimeoutMs * ATTEMPT_TIMEOUTS_MAX;
}

/**
 * Between a step's command being written and its being stored in its stream: the relay publishes
 * at commit, in milliseconds; a second covers a busy one.
 */
const COMMAND_STORED_WITHIN_MS = 1_000;

/** How long the queues a step's messages pass held messages since a time, added up, as sampled at `sampledAt`. */
export interface QueuedWait {
  waitedMs: number;
  sampledAt: Date;
}

/** How long, added up over the queues a step's messages pass, those queues held messages since a time, as last sampled. */
export type QueuedSince = (step: SagaStep, since: Date) => QueuedWait | undefined;

/**
 * Whether the command of an overdue step, or an answer it caused, may still be waiting in the
 * saga's queues rather than be lost. `queuedSince(step, t)` adds up, over the queues the step's
 * messages pass, the longest each held a message since t, as last sampled: a command that started
 * at t and went from queue to queue, still queued then, had waited no longer than that in all.
 * While that sum is as long as the attempt had been going when it was sampled (less a second for
 * the command's way to its stream), the command may be behind those messages, and sending it
 * again would only lengthen the queues. Once it is shorter, the command or its answer was lost (a
 * NATS crash), and the command goes again; so it does when nothing was sampled.
 */
export function mayStillBeQueued(
  step: { name: SagaStep; deadline: Date; attempts: number },
  queuedSince: QueuedSince,
  timings: SagaTimings,
): boolean {
  const startedAt = new Date(step.deadline.getTime() - attemptMs(step.attempts, timings));
  const queued = queuedSince(step.name, startedAt);
  if (!queued || queued.waitedMs <= 0) return false;
  return queued.waitedMs >= queued.sampledAt.getTime() - startedAt.getTime() - COMMAND_STORED_WITHIN_MS;
}
