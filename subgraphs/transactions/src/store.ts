/** Prisma behind the saga's store port and the transfer queries. */
import { appendToOutbox, createEvent, type EventData, type EventType } from "@vaultpay/events";
import type { Db, Tx } from "./db.ts";
import type { SagaStore, TransferPatch, TransferState } from "./saga.ts";
import type { TransferStatus } from "./transfers.ts";

type TransferRow = Awaited<ReturnType<Tx["transfer"]["findUniqueOrThrow"]>>;

export function toState(row: TransferRow): TransferState {
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
      const locked = await tx.$queryRawUnsafe<Array<{ id: string }>>(`SELECT id::text AS id FROM transfer WHERE id = $1::uuid FOR UPDATE`, id);
      if (locked.length === 0) return null;
      return toState(await tx.transfer.findUniqueOrThrow({ where: { id } }));
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
  const rows = await tx.$queryRawUnsafe<Array<{ id: string }>>(
    `SELECT id::text AS id FROM transfer
      WHERE step <> 'NONE' AND step_deadline_at < now()
      ORDER BY step_deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
    limit,
  );
  if (rows.length === 0) return [];
  const transfers = await tx.transfer.findMany({ where: { id: { in: rows.map((row) => row.id) } } });
  return transfers.map(toState);
}

export type { Db, Tx };
