import { DomainError, canonicalUuid, isUuid, requireAdmin, type Caller } from "@vaultpay/kit";
import { ChainVerifier, type ChainedRecord, type VerificationResult } from "./chain.ts";

/** Page size limits of auditLog. */
export const AUDIT_PAGE_DEFAULT = 100;
export const AUDIT_PAGE_MAX = 500;
/** Records read per query while verifying: bounds memory whatever the length of the log. */
export const VERIFY_BATCH_SIZE = 1_000;

export interface ChainHead {
  seq: number;
  hash: string;
}

export interface AuditFilter {
  correlationId?: string | undefined;
  type?: string | undefined;
  first: number;
  afterSeq: number;
}

/** Storage port of the audit log (store.ts adapts Prisma to it). */
export interface AuditStore {
  list(filter: AuditFilter): Promise<ChainedRecord[]>;
  findByEventId(eventId: string): Promise<ChainedRecord | undefined>;
  /** Records with afterSeq < seq <= throughSeq, in seq order, at most `limit`. */
  readChain(afterSeq: number, throughSeq: number, limit: number): Promise<ChainedRecord[]>;
  readHead(): Promise<ChainHead>;
}

/** The audit log's read side: who may read it, and how its integrity is checked. */
export class AuditLog {
  private readonly store: AuditStore;

  constructor(store: AuditStore) {
    this.store = store;
  }

  async records(
    caller: Caller | undefined,
    args: {
      correlationId?: string | null | undefined;
      type?: string | null | undefined;
      first?: number | null | undefined;
      afterSeq?: number | null | undefined;
    },
  ): Promise<ChainedRecord[]> {
    requireAdmin(caller, "The audit log");
    const first = args.first ?? AUDIT_PAGE_DEFAULT;
    if (!Number.isInteger(first) || first < 1 || first > AUDIT_PAGE_MAX) {
      throw new DomainError("BAD_USER_INPUT", `first must be between 1 and ${AUDIT_PAGE_MAX}`, { field: "first" });
    }
    const afterSeq = args.afterSeq ?? 0;
    if (!Number.isInteger(afterSeq) || afterSeq < 0) {
      throw new DomainError("BAD_USER_INPUT", "afterSeq must be a non-negative integer", { field: "afterSeq" });
    }
    return this.store.list({ correlationId: args.correlationId ?? undefined, type: args.type ?? undefined, first, afterSeq });
  }

  /** Entity resolution (AuditRecord @key id): ADMIN only as well. */
  async record(caller: Caller | undefined, eventId: string): Promise<ChainedRecord | null> {
    requireAdmin(caller, "The audit log");
    if (!isUuid(eventId)) return null;
    return (await this.store.findByEventId(canonicalUuid(eventId))) ?? null;
  }

  async verify(caller: Caller | undefined): Promise<VerificationResult> {
    requireAdmin(caller, "The audit log");
    return verifyChain(this.store);
  }
}

/**
 * Verifies the chain up to the head read at the start: appends that commit meanwhile come after it
 * and are left for the next run, so a verification never races the consumers.
 */
export async function verifyChain(store: AuditStore, batchSize = VERIFY_BATCH_SIZE): Promise<VerificationResult> {
  const head = await store.readHead();
  const verifier = new ChainVerifier();
  let afterSeq = 0;
  for (;;) {
    const batch = await store.readChain(afterSeq, head.seq, batchSize);
    if (batch.length === 0 || !verifier.feed(batch)) break;
    afterSeq = batch[batch.length - 1]!.seq;
  }
  return verifier.finish(head);
}
