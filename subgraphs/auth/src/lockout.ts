import { createHmac } from "node:crypto";

/**
 * Account lockout after repeated failures (wrong password or wrong OTP). It is keyed by a keyed
 * hash of the email, not by user id, so an email with no account locks exactly like a real one:
 * a lockout answer reveals nothing about who is registered.
 */
export interface LockoutPolicy {
  /** Failures in a row that start a lock. */
  maxFailures: number;
  baseLockSeconds: number;
  maxLockSeconds: number;
  /** A quiet period after which failures and the lock level are forgotten. */
  memorySeconds: number;
}

/** 5 failures → 1 min, the next 5 → 2 min, then 4, 8 … capped at 1 h; forgotten after a quiet day. */
export const DEFAULT_LOCKOUT_POLICY: LockoutPolicy = { maxFailures: 5, baseLockSeconds: 60, maxLockSeconds: 3600, memorySeconds: 24 * 3600 };

export interface LockoutState {
  /** Failures since the last lock (or success). */
  failures: number;
  /** Locks so far; each doubles the next one. */
  level: number;
  lockedUntilMs: number;
}

export interface LockoutStore {
  get(key: string): Promise<LockoutState | undefined>;
  put(key: string, state: LockoutState, ttlSeconds: number): Promise<void>;
  clear(key: string): Promise<void>;
}

/** Pure: the state after one more failure at `nowMs`, and the lock it started (if any). */
export function afterFailure(state: LockoutState | undefined, nowMs: number, policy: LockoutPolicy): { state: LockoutState; lockedForSeconds: number | null } {
  const current = state ?? { failures: 0, level: 0, lockedUntilMs: 0 };
  const failures = current.failures + 1;
  if (failures < policy.maxFailures) return { state: { ...current, failures }, lockedForSeconds: null };
  const lockedForSeconds = Math.min(policy.baseLockSeconds * 2 ** current.level, policy.maxLockSeconds);
  return { state: { failures: 0, level: current.level + 1, lockedUntilMs: nowMs + lockedForSeconds * 1000 }, lockedForSeconds };
}

export class Lockout {
  constructor(
    private readonly store: LockoutStore,
    private readonly pepper: string,
    private readonly now: () => Date,
    private readonly policy: LockoutPolicy = DEFAULT_LOCKOUT_POLICY,
  ) {}

  /** The key for an email; the store never holds the address itself. */
  keyFor(email: string): string {
    return createHmac("sha256", this.pepper).update(`lockout\u0000${email}`).digest("base64url");
  }

  /** Seconds until the lock ends, or 0 when not locked. */
  async lockedForSeconds(key: string): Promise<number> {
    const state = await this.store.get(key);
    const remainingMs = (state?.lockedUntilMs ?? 0) - this.now().getTime();
    return remainingMs > 0 ? Math.ceil(remainingMs / 1000) : 0;
  }

  /** Records a failure; returns the lock it started, in seconds, or null. */
  async recordFailure(key: string): Promise<number | null> {
    // Read-modify-write: a concurrent burst can lose a count; the gateway's rate limit bounds bursts.
    const next = afterFailure(await this.store.get(key), this.now().getTime(), this.policy);
    await this.store.put(key, next.state, this.policy.memorySeconds + (next.lockedForSeconds ?? 0));
    return next.lockedForSeconds;
  }

  async reset(key: string): Promise<void> {
    await this.store.clear(key);
  }
}
