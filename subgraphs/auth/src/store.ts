import { appendToOutbox, type Event } from "@vaultpay/events";
import type { AuthStore, DeviceRecord, UserRecord } from "./service.ts";
import type { Db, Tx } from "./db.ts";

type UserRow = { id: string; email: string; role: "CUSTOMER" | "ADMIN"; passwordHash: string; phoneEncrypted: string; createdAt: Date };
type DeviceRow = { id: string; fingerprint: string; label: string | null; trusted: boolean; firstSeenAt: Date; lastSeenAt: Date };

const toUser = (row: UserRow): UserRecord => ({
  id: row.id,
  email: row.email,
  role: row.role,
  passwordHash: row.passwordHash,
  phoneEncrypted: row.phoneEncrypted,
  createdAt: row.createdAt,
});

const toDevice = (row: DeviceRow): DeviceRecord => ({
  id: row.id,
  fingerprint: row.fingerprint,
  label: row.label,
  trusted: row.trusted,
  firstSeenAt: row.firstSeenAt,
  lastSeenAt: row.lastSeenAt,
});

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown })?.code === "P2002";
}

/** A user lists at most this many devices; more would be a client minting fingerprints. */
const DEVICES_LIST_MAX = 100;

/**
 * The auth store on Prisma. Every change that has events appends them to the outbox in the same
 * transaction; `afterCommit` wakes the relay so they leave without waiting for its poll.
 */
export function createPrismaAuthStore(db: Db, afterCommit: () => void = () => {}): AuthStore {
  async function withEvents<T>(work: (tx: Tx) => Promise<{ result: T; events: Event[] }>): Promise<T> {
    const { result, events } = await db.$transaction(async (tx) => {
      const done = await work(tx);
      for (const event of done.events) await appendToOutbox(tx, event);
      return done;
    });
    if (events.length > 0) afterCommit();
    return result;
  }

  return {
    async findUserByEmail(email) {
      const row = await db.user.findUnique({ where: { email } });
      return row ? toUser(row) : undefined;
    },
    async findUserById(id) {
      const row = await db.user.findUnique({ where: { id } });
      return row ? toUser(row) : undefined;
    },
    async listUsers({ first, afterId }) {
      const rows = await db.user.findMany({ where: afterId ? { id: { gt: afterId } } : {}, orderBy: { id: "asc" }, take: first });
      return rows.map(toUser);
    },
    async createUser(user, events) {
      try {
        return await withEvents(async (tx) => {
          const created = toUser(await tx.user.create({ data: user }));
          return { result: created, events: events(created) };
        });
      } catch (error) {
        if (isUniqueViolation(error)) return "duplicate";
        throw error;
      }
    },
    startSession({ userId, deviceId, label, dpopJkt, now, expiresAt, refreshTokenHash }, events) {
      return withEvents(async (tx) => {
        // Insert-or-skip, then update: two logins racing on a new device both succeed, one records it.
        const inserted = await tx.device.createMany({
          data: [{ userId, fingerprint: deviceId, label, firstSeenAt: now, lastSeenAt: now }],
          skipDuplicates: true,
        });
        const newDevice = inserted.count === 1;
        const device = newDevice
          ? await tx.device.findUniqueOrThrow({ where: { userId_fingerprint: { userId, fingerprint: deviceId } } })
          : await tx.device.update({
              where: { userId_fingerprint: { userId, fingerprint: deviceId } },
              data: { lastSeenAt: now, trusted: true },
            });
        const session = await tx.session.create({ data: { userId, deviceId, createdAt: now, expiresAt } });
        await tx.refreshToken.create({ data: { tokenHash: refreshTokenHash, sessionId: session.id, createdAt: now, expiresAt, dpopJkt } });
        const started = { sessionId: session.id, device: toDevice(device), newDevice };
        return { result: started, events: events(started) };
      });
    },
    async findRefreshToken(tokenHash) {
      const row = await db.refreshToken.findUnique({ where: { tokenHash }, include: { session: true } });
      if (!row) return undefined;
      const { session } = row;
      return {
        tokenHash: row.tokenHash,
        dpopJkt: row.dpopJkt,
        usedAt: row.usedAt,
        successorEncrypted: row.successorEncrypted,
        expiresAt: row.expiresAt,
        session: {
          id: session.id,
          userId: session.userId,
          deviceId: session.deviceId,
          expiresAt: session.expiresAt,
          revokedAt: session.revokedAt,
        },
      };
    },
    async rotateRefreshToken(oldHash, next, now, forgetSealedBefore) {
      return db.$transaction(async (tx) => {
        // The conditional update is the lock: of two concurrent rotations only one sees count 1, and
        // the other, waiting on the row lock, reads the successor sealed here once this commits.
        const claimed = await tx.refreshToken.updateMany({
          where: { tokenHash: oldHash, usedAt: null },
          data: { usedAt: now, successorEncrypted: next.successorEncrypted },
        });
        if (claimed.count !== 1) return false;
        const old = await tx.refreshToken.findUniqueOrThrow({ where: { tokenHash: oldHash } });
        await tx.refreshToken.create({
          data: { tokenHash: next.tokenHash, sessionId: old.sessionId, createdAt: now, expiresAt: next.expiresAt, dpopJkt: next.dpopJkt },
        });
        await tx.refreshToken.updateMany({
          where: { sessionId: old.sessionId, usedAt: { lt: forgetSealedBefore }, successorEncrypted: { not: null } },
          data: { successorEncrypted: null },
        });
        return true;
      });
    },
    revokeSession(sessionId, reason, now, events) {
      return withEvents(async (tx) => {
        const revoked = await tx.session.updateMany({
          where: { id: sessionId, revokedAt: null },
          data: { revokedAt: now, revokedReason: reason },
        });
        return revoked.count === 1 ? { result: true, events } : { result: false, events: [] };
      });
    },
    async listDevices(userId) {
      const rows = await db.device.findMany({ where: { userId }, orderBy: { firstSeenAt: "asc" }, take: DEVICES_LIST_MAX });
      return rows.map(toDevice);
    },
    async hasDevice(userId, fingerprint) {
      return (await db.device.count({ where: { userId, fingerprint } })) > 0;
    },
    async appendEvents(events) {
      if (events.length === 0) return;
      await withEvents(async () => ({ result: undefined, events }));
    },
  };
}
