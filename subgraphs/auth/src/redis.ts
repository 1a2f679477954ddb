import type { Redis } from "ioredis";
import { revokedSessionKey } from "@vaultpay/kit";
import type { Notifier, OutgoingMessage, SessionRevocations } from "./service.ts";
import type { LockoutState, LockoutStore } from "./lockout.ts";
import type { OtpChallengeRecord, OtpStore } from "./otp.ts";

/** Redis adapters of the auth ports. Keys are namespaced `auth:`; none holds an email or a code. */

const otpKey = (challengeId: string) => `auth:otp:${challengeId}`;

export function createRedisOtpStore(redis: Redis): OtpStore {
  return {
    async save(record, ttlSeconds) {
      await redis
        .multi()
        .hset(otpKey(record.challengeId), {
          userId: record.userId ?? "",
          lockoutKeys: JSON.stringify(record.lockoutKeys),
          deviceId: record.deviceId,
          purpose: record.purpose,
          codeHash: record.codeHash,
          expiresAtMs: String(record.expiresAtMs),
          attempts: "0",
        })
        .expire(otpKey(record.challengeId), ttlSeconds)
        .exec();
    },
    async get(challengeId) {
      const fields = await redis.hgetall(otpKey(challengeId));
      if (!fields.codeHash) return undefined;
      return {
        challengeId,
        userId: fields.userId || null,
        lockoutKeys: fields.lockoutKeys ? (JSON.parse(fields.lockoutKeys) as string[]) : [],
        deviceId: fields.deviceId ?? "",
        purpose: fields.purpose === "register" ? "register" : "login",
        codeHash: fields.codeHash,
        expiresAtMs: Number(fields.expiresAtMs),
        attempts: Number(fields.attempts ?? 0),
      } satisfies OtpChallengeRecord & { attempts: number };
    },
    // Only on a live challenge: HINCRBY alone would recreate a consumed one as a key without a TTL.
    countAttempt: async (challengeId) =>
      Number(
        await redis.eval(
          `if redis.call("EXISTS", KEYS[1]) == 1 then return redis.call("HINCRBY", KEYS[1], "attempts", 1) end return 1000000`,
          1,
          otpKey(challengeId),
        ),
      ),
    consume: async (challengeId) => (await redis.del(otpKey(challengeId))) === 1,
  };
}

const lockoutKey = (key: string) => `auth:lockout:${key}`;

export function createRedisLockoutStore(redis: Redis): LockoutStore {
  return {
    async get(key) {
      const raw = await redis.get(lockoutKey(key));
      return raw ? (JSON.parse(raw) as LockoutState) : undefined;
    },
    async put(key, state, ttlSeconds) {
      await redis.set(lockoutKey(key), JSON.stringify(state), "EX", Math.max(1, Math.ceil(ttlSeconds)));
    },
    async clear(key) {
      await redis.del(lockoutKey(key));
    },
  };
}

/** The key kit defines, so the gateway and every subgraph can refuse tokens of a revoked session. */
export function createRedisSessionRevocations(redis: Redis): SessionRevocations {
  return {
    async revoke(sessionId, ttlSeconds) {
      await redis.set(revokedSessionKey(sessionId), "1", "EX", ttlSeconds);
    },
    isRevoked: async (sessionId) => (await redis.exists(revokedSessionKey(sessionId))) === 1,
  };
}

export interface DevMessage extends OutgoingMessage {
  sentAt: Date;
}

/** Per recipient: the newest messages only, for an hour. */
export const DEV_MAILBOX_MAX_MESSAGES = 20;
export const DEV_MAILBOX_TTL_SECONDS = 3600;
const mailboxKey = (to: string) => `auth:dev-mailbox:${to}`;

/**
 * Development notifier: instead of sending, keeps what would have been sent in Redis, where
 * `devMailbox(to)` reads it. Never wired in production (main.ts refuses to start there).
 */
export function createDevMailbox(redis: Redis): Notifier & { read(to: string): Promise<DevMessage[]> } {
  return {
    async send(message) {
      const key = mailboxKey(message.to);
      await redis
        .multi()
        .lpush(key, JSON.stringify({ ...message, sentAt: new Date().toISOString() }))
        .ltrim(key, 0, DEV_MAILBOX_MAX_MESSAGES - 1)
        .expire(key, DEV_MAILBOX_TTL_SECONDS)
        .exec();
    },
    async read(to) {
      const raw = await redis.lrange(mailboxKey(to), 0, DEV_MAILBOX_MAX_MESSAGES - 1);
      return raw.map((line) => {
        const parsed = JSON.parse(line) as OutgoingMessage & { sentAt: string };
        return { ...parsed, sentAt: new Date(parsed.sentAt) };
      });
    },
  };
}
