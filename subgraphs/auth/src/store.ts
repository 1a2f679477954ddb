import { v7 as uuidv7 } from "uuid";
import { appendToOutbox, preferIndexScans, type Event, type SqlDatabase, type SqlExecutor } from "@vaultpay/events";
import type { AuthStore, DeviceRecord, RefreshTokenRecord, StartedSession, UserRecord } from "./service.ts";
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

/** Only the record's own fields: a row (and its session) carries more, such as creation times and the revocation reason. */
const toRefreshToken = (row: RefreshTokenRecord): RefreshTokenRecord => ({
  tokenHash: row.tokenHash,
  dpopJkt: row.dpopJkt,
  usedAt: row.usedAt,
  successorEncrypted: row.successorEncrypted,
  expiresAt: row.expiresAt,
  session: {
    id: row.session.id,
    userId: row.session.userId,
    deviceId: row.session.deviceId,
    expiresAt: row.session.expiresAt,
    revokedAt: row.session.revokedAt,
  },
});

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: unknown })?.code === "P2002";
}

/** A user lists at most this many devices; more would be a client minting fingerprints. */
const DEVICES_LIST_MAX = 100;

/**
 * The auth store on Prisma. Every change that has events appends them to the outbox in the same
 * transaction; `afterCommit` hands them to the relay, which publishes them without waiting for its poll.
 */
export function createPrismaAuthStore(db: Db, afterCommit: (events: readonly Event[]) => void = () => {}): AuthStore {
  const withEvents = <T>(work: (tx: Tx) => Promise<{ result: T; events: Event[] }>) => commitWithEvents(db, afterCommit, work);
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
    startSession(input, events) {
      return withEvents(async (tx) => {
        const started = await insertSession(tx, input);
        return { result: started, events: events(started) };
      });
    },
    async findRefreshToken(tokenHash) {
      const row = await db.refreshToken.findUnique({ where: { tokenHash }, include: { session: true } });
      return row ? toRefreshToken(row) : undefined;
    },
    rotateRefreshToken(oldHash, next, now, forgetSealedBefore) {
      return db.$transaction((tx) => rotateIn(tx, oldHash, next, now, forgetSealedBefore));
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

/** Runs `work` in a transaction that also appends the events it returns to the outbox; hands them to the relay after the commit. */
async function commitWithEvents<T>(
  db: Db,
  afterCommit: (events: readonly Event[]) => void,
  work: (tx: Tx) => Promise<{ result: T; events: Event[] }>,
): Promise<T> {
  const { result, events } = await db.$transaction(async (tx) => {
    const done = await work(tx);
    for (const event of done.events) await appendToOutbox(tx, event);
    return done;
  });
  if (events.length > 0) afterCommit(events);
  return result;
}

/** Records (or re-sees) the device, then creates the session and its first refresh token. */
async function insertSession(tx: Tx, input: Parameters<AuthStore["startSession"]>[0]): Promise<StartedSession> {
  const { userId, deviceId, label, dpopJkt, now, expiresAt, refreshTokenHash } = input;
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
  return { sessionId: session.id, device: toDevice(device), newDevice };
}

/** The rotation of AuthStore.rotateRefreshToken, inside its transaction. */
async function rotateIn(
  tx: Tx,
  oldHash: string,
  next: Parameters<AuthStore["rotateRefreshToken"]>[1],
  now: Date,
  forgetSealedBefore: Date,
): Promise<boolean> {
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
}

/** A transfer notice as the sender claims it. */
export interface ClaimedNotice {
  id: string;
  transfer_id: string;
  status: string;
  user_id: string;
  amount_minor: bigint;
  currency: string;
  reason: string | null;
  attempts: number;
  /** The user's contact, read by the claim itself (null when the user does not exist). */
  email: string | null;
  /** Sealed with auth's key ring; the sender's contactOf opens it. */
  phone_encrypted: string | null;
}

/** A notice as a terminal transfer event calls for it. */
export interface TransferNoticeRow {
  transferId: string;
  status: string;
  userId: string;
  amountMinor: bigint;
  currency: string;
  reason: string | null;
  eventId: string;
}

/** The notices terminal transfer events call for; one already there for a transfer and status is kept (unique). */
export async function insertTransferNotices(tx: SqlExecutor, notices: readonly TransferNoticeRow[]): Promise<void> {
  if (notices.length === 0) return;
  // Raw and set-based: on every transfer's path, Prisma's query compiler cost more than the insert.
  await tx.$executeRawUnsafe(
    `INSERT INTO transfer_notice (id, transfer_id, status, user_id, amount_minor, currency, reason, event_id)
     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::bigint[], $6::text[], $7::text[], $8::uuid[])
     ON CONFLICT DO NOTHING`,
    notices.map(() => uuidv7()),
    notices.map((notice) => notice.transferId),
    notices.map((notice) => notice.status),
    notices.map((notice) => notice.userId),
    notices.map((notice) => notice.amountMinor.toString()),
    notices.map((notice) => notice.currency),
    notices.map((notice) => notice.reason),
    notices.map((notice) => notice.eventId),
  );
}

/** Notices still SENDING this long after their claim (rows from before claimed_at count from their creation). */
export async function countStuckSending(db: Pick<Db, "$queryRawUnsafe">, olderThanSeconds: number): Promise<number> {
  const [row] = await db.$queryRawUnsafe<Array<{ n: number }>>(
    `SELECT count(*)::int AS n FROM transfer_notice
      WHERE state = 'SENDING' AND COALESCE(claimed_at, created_at) < now() - make_interval(secs => $1)`,
    olderThanSeconds,
  );
  return row?.n ?? 0;
}

/** PENDING → SENDING for up to `limit` due notices, committed on return (replicas skip each other's). */
export function claimNotices(db: SqlDatabase, limit: number): Promise<ClaimedNotice[]> {
  // A transaction for the one setting: a sent notice leaves a dead entry in the queue's index. The
  // claimed rows are updated by address, as the outbox's claim is (CLAIM_OUTBOX_ROWS): no plan
  // made on small-table statistics can turn the update into a walk of the table.
  return db.$transaction(
    async (tx) => {
      await preferIndexScans(tx);
      return tx.$queryRawUnsafe<ClaimedNotice[]>(
        `UPDATE transfer_notice n SET state = 'SENDING', attempts = attempts + 1, claimed_at = now()
     WHERE ctid = ANY(ARRAY(SELECT ctid FROM transfer_notice WHERE state = 'PENDING' AND next_attempt_at <= now()
                            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED))
     RETURNING n.id, n.transfer_id, n.status, n.user_id, n.amount_minor, n.currency, n.reason, n.attempts,
               (SELECT u.email FROM "user" u WHERE u.id = n.user_id) AS email,
               (SELECT u.phone_encrypted FROM "user" u WHERE u.id = n.user_id) AS phone_encrypted`,
        limit,
      );
    },
    { preferIndexScans: true },
  );
}

/**
 * A round's outcomes in one statement (one commit): the notices sent (SENT) and those that can
 * never be sent because their user is unknown (FAILED for good); the sent ones stamped sent_at.
 */
export async function settleNotices(db: SqlExecutor, outcome: { sent: readonly string[]; dropped: readonly string[] }): Promise<void> {
  if (outcome.sent.length === 0 && outcome.dropped.length === 0) return;
  await db.$executeRawUnsafe(
    `UPDATE transfer_notice SET state = CASE WHEN id = ANY($1::uuid[]) THEN 'SENT' ELSE 'FAILED' END,
       sent_at = CASE WHEN id = ANY($1::uuid[]) THEN now() ELSE sent_at END
     WHERE id = ANY($1::uuid[]) OR id = ANY($2::uuid[])`,
    outcome.sent,
    outcome.dropped,
  );
}

/** A refused send: back to PENDING, due again after `delaySeconds` (or FAILED when given up). */
export async function retryNoticeLater(db: SqlExecutor, id: string, giveUp: boolean, delaySeconds: number): Promise<void> {
  await db.$executeRawUnsafe(
    `UPDATE transfer_notice SET state = $2, next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1::uuid`,
    id,
    giveUp ? "FAILED" : "PENDING",
    delaySeconds,
  );
}
