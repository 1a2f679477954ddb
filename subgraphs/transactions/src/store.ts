/** Prisma behind the saga's store port and the transfer queries. */
import { appendToOutbox, createEvent, type EventData, type EventType } from "@vaultpay/events";
import type { Db, Tx } from "./db.ts";
import { Prisma } from "./generated/prisma/client.ts";
import type { SagaStore, TransferPatch, TransferState } from "./saga.ts";
import type { TransferStatus } from "./transfers.ts";

type TransferRow = Awaited<ReturnType<Tx["transfer"]["findUniqueOrThrow"]>>;

/** The columns of the saga's state, under the model's field names, for raw locking reads. */
const LOCKED_TRANSFER_COLUMNS = [
  "id::text AS id",
  `user_id AS "userId"`,
  `from_account_id AS "fromAccountId"`,
  `to_account_id AS "toAccountId"`,
  `amount_minor AS "amountMinor"`,
  "currency",
  "status::text AS status",
  "step::text AS step",
  `step_attempts AS "stepAttempts"`,
  `failure_reason AS "failureReason"`,
  `request_device_id AS "requestDeviceId"`,
  `request_device_proven AS "requestDeviceProven"`,
  `session_device_id AS "sessionDeviceId"`,
  `correlation_id AS "correlationId"`,
  `created_at AS "createdAt"`,
].join(", ");

type LockedTransferRow = Pick<
  TransferRow,
  | "id"
  | "userId"
  | "fromAccountId"
  | "toAccountId"
  | "amountMinor"
  | "currency"
  | "status"
  | "step"
  | "stepAttempts"
  | "failureReason"
  | "requestDeviceId"
  | "requestDeviceProven"
  | "sessionDeviceId"
  | "correlationId"
  | "createdAt"
>;

export function toState(row: LockedTransferRow): TransferState {
  return {
    id: row.id,
    userId: row.userId,
    fromAccountId: row.fromAccountId,
    toAccountId: row.toAccountId,
    amountMinor: row.amountMinor,
    currency: row.currency,
    status: row.status,
    step: row.step,
    stepAttempts: row.stepAttempts,
    failureReason: row.failureReason,
    requestDeviceId: row.requestDeviceId,
    requestDeviceProven: row.requestDeviceProven,
    sessionDeviceId: row.sessionDeviceId,
    correlationId: row.correlationId,
    createdAt: row.createdAt,
  };
}

export function sagaStore(tx: Tx): SagaStore {
  return {
    async lockTransfer(id) {
      // One round trip: Prisma's findUnique cannot lock, so the row is read by the locking query.
      const [row] = await tx.$queryRawUnsafe<LockedTransferRow[]>(`SELECT ${LOCKED_TRANSFER_COLUMNS} FROM transfer WHERE id = $1::uuid FOR UPDATE`, id);
      return row ? toState(row) : null;
    },
    async update(id, patch: TransferPatch) {
      await tx.transfer.update({
        where: { id },
        data: {
          ...(patch.status ? { status: patch.status } : {}),
          step: patch.step,
          stepAttempts: patch.stepAttempts,
          stepDeadlineAt: patch.stepDeadlineAt,
          ...(patch.failureReason !== undefined ? { failureReason: patch.failureReason } : {}),
        },
      });
    },
    async recordStatus(transferId, status: TransferStatus, reason, at) {
      await tx.transferStatusChange.create({ data: { transferId, status, reason, changedAt: at } });
    },
    async emit<T extends EventType>(type: T, data: EventData<T>) {
      await appendToOutbox(tx, createEvent(type, data));
    },
  };
}

/** Transfers whose current step is overdue, locked for this transaction (replicas skip each other's). */
export async function lockOverdue(tx: Tx, limit: number): Promise<TransferState[]> {
  const rows = await tx.$queryRawUnsafe<LockedTransferRow[]>(
    `SELECT ${LOCKED_TRANSFER_COLUMNS} FROM transfer
      WHERE step <> 'NONE' AND step_deadline_at < now()
      ORDER BY step_deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
    limit,
  );
  return rows.map(toState);
}

/**
 * Inserts a new transfer and, in the same transaction, whatever starts it (`start`); false when a
 * transfer with the same user and idempotency key exists already (a concurrent request won the
 * insert), so the caller answers as that request's retry would.
 */
export async function insertTransfer(
  db: Db,
  data: Prisma.TransferUncheckedCreateInput,
  start: (store: SagaStore, transfer: TransferState) => Promise<void>,
): Promise<boolean> {
  try {
    await db.$transaction(async (tx) => {
      const row = await tx.transfer.create({ data });
      await start(sagaStore(tx), toState(row));
    });
    return true;
  } catch (error) {
    if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002") return false;
    throw error;
  }
}

/** Transfers by status, for the gauge operators watch. */
export async function countTransfersByStatus(db: Db): Promise<Array<{ status: string; n: number }>> {
  return (await db.$queryRawUnsafe(`SELECT status::text AS status, count(*)::int AS n FROM transfer GROUP BY status`)) as Array<{ status: string; n: number }>;
}

export type { Db, Tx };
