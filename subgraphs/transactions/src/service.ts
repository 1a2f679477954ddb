/** Use cases of the transactions service: start a transfer, read transfers, keep the directory. */
import { randomUUID } from "node:crypto";
import DataLoader from "dataloader";
import { LRUCache } from "lru-cache";
import { blindIndex } from "@vaultpay/crypto";
import { DomainError, isUuid, type Caller } from "@vaultpay/kit";
import { ACCOUNT_NUMBER_CONTEXT } from "@vaultpay/money";
import type { Event, EventData, SqlExecutor } from "@vaultpay/events";
import { sendStepCommand, type SagaStore, type TransferState } from "./saga.ts";
import {
  findKeyAndEnds,
  type DirectoryEntry,
  findHistories,
  findTransferByKey,
  findTransferWithHistory,
  findTransfersOf,
  insertTransfer,
  upsertDirectoryEntry,
  type Db,
  type StatusChangeRow,
} from "./store.ts";
import {
  decodeCursor,
  encodeCursor,
  LIMITS,
  mergeNewestFirst,
  pageSize,
  parseDirections,
  parseTransferRequest,
  reasonSeenAs,
  requestHash,
  stepDeadline,
  viewOf,
  type SagaTimings,
  type TransferDirection,
} from "./transfers.ts";

type TransferRow = Awaited<ReturnType<Db["transfer"]["findUniqueOrThrow"]>>;

/** A transfer as one viewer sees it: which way it went for them, and what the receiver may not read removed. */
export type TransferRecord = TransferRow & {
  direction: TransferDirection | null;
  /** Its status history when it was read with the transfer (`get`); lists batch theirs (historyLoader). */
  history?: StatusChangeRow[];
};

function seenAs(row: TransferRow, direction: TransferDirection | null): TransferRecord {
  return { ...row, direction, failureReason: reasonSeenAs(direction, row.failureReason) };
}

export interface InitiateInput {
  fromAccountId: string;
  toAccountNumber: string;
  amountMinor: unknown;
  idempotencyKey: string;
  note?: string | null | undefined;
}

/**
 * The source (the caller's, by id) and the destination (by its number's blind index) among the
 * directory entries read for them, or why they cannot be a transfer's ends.
 */
function endsOf(caller: Caller, fromAccountId: string, toBlindIndex: string, ends: readonly DirectoryEntry[]) {
  const from = ends.find((entry) => entry.accountId === fromAccountId);
  // Someone else's account looks exactly like a missing one: ids cannot be probed.
  if (!from || from.userId !== caller.userId) return new DomainError("NOT_FOUND", "Account not found", { field: "fromAccountId" });
  const to = ends.find((entry) => entry.numberBlindIndex === toBlindIndex);
  if (!to) return new DomainError("NOT_FOUND", "No account has that number", { field: "toAccountNumber" });
  if (to.accountId === from.accountId)
    return new DomainError("BAD_USER_INPUT", "Source and destination are the same account", { field: "toAccountNumber" });
  if (to.currency !== from.currency)
    return new DomainError("BAD_USER_INPUT", "The accounts hold different currencies", { field: "toAccountNumber" });
  return { from, to };
}

/**
 * Directory entries initiate has read, by account id and by number's blind index. An entry never
 * changes once written (account.created inserts it; nothing updates or deletes one), so a cached
 * entry is never stale, on any replica. Bounded: the least recently used are dropped.
 */
class DirectoryCache {
  private readonly byId: LRUCache<string, DirectoryEntry>;
  private readonly byBlindIndex: LRUCache<string, DirectoryEntry>;

  constructor(max: number) {
    this.byId = new LRUCache({ max });
    this.byBlindIndex = new LRUCache({ max });
  }

  remember(entries: readonly DirectoryEntry[]): void {
    for (const entry of entries) {
      this.byId.set(entry.accountId, entry);
      this.byBlindIndex.set(entry.numberBlindIndex, entry);
    }
  }

  /** Both ends, when both are cached. */
  ends(fromAccountId: string, toBlindIndex: string): DirectoryEntry[] | undefined {
    const from = this.byId.get(fromAccountId);
    const to = from && this.byBlindIndex.get(toBlindIndex);
    return to ? [from, to] : undefined;
  }
}

/** Directory entries kept per cache (two caches: by id and by blind index); an entry is ~0.3 KiB. */
const DIRECTORY_CACHE_ENTRIES = 20_000;

/** What starts a transfer: its first status, announced, and the command of its first step (the debit). */
async function startTransfer(store: SagaStore, transfer: TransferState, at: Date): Promise<void> {
  await store.recordStatus(transfer.id, "PENDING", null, at);
  await store.emit("transaction.status.changed", {
    transferId: transfer.id,
    userId: transfer.userId,
    status: "PENDING",
    previousStatus: null,
    failureReason: null,
    changedAt: at.toISOString(),
  });
  await sendStepCommand(store, transfer, "DEBIT");
}

export class TransferService {
  private readonly db: Db;
  private readonly blindIndexKey: Buffer;
  private readonly timings: SagaTimings;
  /** Hands a new transfer's committed events to the outbox relay, so the saga starts without waiting for a claim. */
  private readonly afterCommit: (events: readonly Event[]) => void;
  /** Where initiate's raw statements run: the service's SqlPool (about half of Prisma's CPU per statement); `db` by default. */
  private readonly sql: SqlExecutor;

  constructor(db: Db, blindIndexKey: Buffer, timings: SagaTimings, afterCommit: (events: readonly Event[]) => void, sql: SqlExecutor = db) {
    this.db = db;
    this.blindIndexKey = blindIndexKey;
    this.timings = timings;
    this.afterCommit = afterCommit;
    this.sql = sql;
  }

  private readonly directory = new DirectoryCache(DIRECTORY_CACHE_ENTRIES);

  /**
   * `device`: the request's device — the DPoP-proven one (id "jkt:<thumbprint>", proven) when the
   * gateway vouched for a proof, else the client's x-device-id claim, recorded but not proven.
   */
  async initiate(
    caller: Caller,
    input: InitiateInput,
    device: { id: string | undefined; proven: boolean },
    correlationId: string,
  ): Promise<TransferRecord> {
    const request = parseTransferRequest(input);
    const toBlindIndex = blindIndex({ blindIndexKey: this.blindIndexKey }, request.toAccountNumber, ACCOUNT_NUMBER_CONTEXT);
    const hash = requestHash(request, toBlindIndex);
    // Known ends that make a valid transfer go straight to the insert (one statement): a retry
    // meets its key's unique constraint there and is answered as below. Otherwise the retry check
    // and the directory read run in one statement, and a retry's transfer is read after.
    const cached = this.directory.ends(request.fromAccountId, toBlindIndex);
    const known = cached && endsOf(caller, request.fromAccountId, toBlindIndex, cached);
    const ends = known && !(known instanceof DomainError) ? known : await this.readEnds(caller, request, toBlindIndex, hash);
    if ("replay" in ends) return ends.replay;
    const { from, to } = ends;

    const id = randomUUID();
    const now = new Date();
    const inserted = await insertTransfer(
      this.sql,
      {
        id,
        userId: caller.userId,
        fromAccountId: from.accountId,
        fromMaskedNumber: from.maskedNumber,
        toAccountId: to.accountId,
        toUserId: to.userId,
        toMaskedNumber: to.maskedNumber,
        amountMinor: request.amountMinor,
        currency: from.currency,
        note: request.note,
        status: "PENDING",
        idempotencyKey: request.idempotencyKey,
        requestHash: hash,
        requestDeviceId: device.id?.slice(0, 128) ?? null,
        requestDeviceProven: device.proven,
        sessionDeviceId: caller.deviceId,
        correlationId,
        step: "DEBIT",
        stepAttempts: 1,
        stepDeadlineAt: stepDeadline(now, 1, this.timings),
        createdAt: now,
        updatedAt: now,
      },
      (store, transfer) => startTransfer(store, transfer, now),
    );
    if (!inserted) {
      // A transfer has this key: a retry met it at the insert (its ends were cached), or a
      // concurrent request with the key won the insert. Answer as a retry.
      const winner = await this.replayOf(caller.userId, request.idempotencyKey, hash);
      if (winner) return winner;
      throw new Error(`transfer with idempotency key of user ${caller.userId} vanished after a unique violation`);
    }
    this.afterCommit(inserted.events);
    return seenAs(inserted.transfer, "SENT");
  }

  /** The ends read from the directory (and cached) after the retry check, or the retried transfer. */
  private async readEnds(
    caller: Caller,
    request: { idempotencyKey: string; fromAccountId: string },
    toBlindIndex: string,
    hash: string,
  ): Promise<{ from: DirectoryEntry; to: DirectoryEntry } | { replay: TransferRecord }> {
    const { replayId, ends } = await findKeyAndEnds(this.sql, {
      userId: caller.userId,
      idempotencyKey: request.idempotencyKey,
      fromAccountId: request.fromAccountId,
      toBlindIndex,
    });
    this.directory.remember(ends);
    if (replayId) {
      const replay = await this.replayOf(caller.userId, request.idempotencyKey, hash);
      if (replay) return { replay };
    }
    const found = endsOf(caller, request.fromAccountId, toBlindIndex, ends);
    if (found instanceof DomainError) throw found;
    return found;
  }

  private async replayOf(userId: string, idempotencyKey: string, hash: string): Promise<TransferRecord | null> {
    const existing = await findTransferByKey(this.db, userId, idempotencyKey);
    if (!existing) return null;
    if (existing.requestHash !== hash) {
      throw new DomainError("CONFLICT", "This idempotency key was used for a different transfer", { field: "idempotencyKey" });
    }
    return seenAs(existing, "SENT");
  }

  /** The caller's transfer, sent or (once COMPLETED) received; any for an ADMIN; NOT_FOUND otherwise. */
  async get(caller: Caller, id: string): Promise<TransferRecord> {
    const found = isUuid(id) ? await findTransferWithHistory(this.sql, id) : null;
    const view = found && viewOf(caller, found.transfer);
    if (!found || !view) throw new DomainError("NOT_FOUND", "Transfer not found");
    return { ...seenAs(found.transfer, view.direction), history: found.history };
  }

  /**
   * The caller's transfers in the directions asked (SENT by default, as before RECEIVED existed),
   * newest first. Each direction reads its own index for one page past the cursor and the two are
   * merged, so a page costs two bounded index reads rather than a sort of the whole history.
   */
  async listMine(
    caller: Caller,
    first: number | null | undefined,
    after: string | null | undefined,
    directions?: readonly TransferDirection[] | null,
  ) {
    const size = pageSize(first);
    const wanted = parseDirections(directions);
    const cursor = after ? decodeCursor(after) : undefined;
    const [sent, received] = await Promise.all([
      wanted.has("SENT") ? findTransfersOf(this.db, caller.userId, "SENT", cursor, size + 1) : [],
      wanted.has("RECEIVED") ? findTransfersOf(this.db, caller.userId, "RECEIVED", cursor, size + 1) : [],
    ]);
    const rows = mergeNewestFirst([sent, received]);
    const page = rows.slice(0, size).map((row) => seenAs(row, viewOf(caller, row)?.direction ?? null));
    return {
      edges: page.map((node) => ({ cursor: encodeCursor(node.createdAt, node.id), node })),
      pageInfo: {
        hasNextPage: rows.length > size,
        endCursor: page.length > 0 ? encodeCursor(page.at(-1)!.createdAt, page.at(-1)!.id) : null,
      },
    };
  }
}

/** A batcher of status histories for one GraphQL request (its cache lives as long as the request). */
export function historyLoader(db: Db) {
  return new DataLoader((transferIds: readonly string[]) => findHistories(db, transferIds), { maxBatchSize: LIMITS.pageSizeMax });
}

/** Keeps the directory of accounts (from account.created) that initiate() looks destinations up in. */
export async function recordAccount(tx: SqlExecutor, data: EventData<"account.created">): Promise<void> {
  await upsertDirectoryEntry(tx, data);
}
