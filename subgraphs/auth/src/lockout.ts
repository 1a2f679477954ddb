import { createHmac } from "node:crypto";

/**
 * Lockout after repeated failures (wrong password or wrong OTP), on two keys at once:
 *
 * - per client: (email, client address) — or (email, device key) for a login that proves a device
 *   registered for the user — locks fast (5 failures), so one address guessing stops quickly
 *   without locking the customer out from everywhere else;
 * - per account: the email alone, a slower ceiling (50 failures) against guessing spread over many
 *   addresses. A login that proves a device already registered for the user skips this one: a
 *   stranger cannot lock the customer's own device out.
 *
 * Keys are keyed hashes of the email, not user ids, so an email with no account locks exactly like
 * a real one: a lockout answer reveals nothing about who is registered.
 */
export interface LockoutPolicy {
  /** Failures in a row that start a lock. */
  maxFailures: number;
  baseLockSeconds: number;
  maxLockSeconds: number;
  /** A quiet period after which failures and the lock level are forgotten. */
  memorySeconds: number;
}

/** Per client: 5 failures → 1 min, the next 5 → 2 min, then 4, 8 … capped at 1 h; forgotten after a quiet day. */
export const DEFAULT_LOCKOUT_POLICY: LockoutPolicy = {
  maxFailures: 5,
  baseLockSeconds: 60,
  maxLockSeconds: 3600,
  memorySeconds: 24 * 3600,
};
/** Per account, whatever the address: 50 failures → 5 min, doubling to 1 h; forgotten after a quiet day. */
export const DEFAULT_ACCOUNT_LOCKOUT_POLICY: LockoutPolicy = {
  maxFailures: 50,
  baseLockSeconds: 300,
  maxLockSeconds: 3600,
  memorySeconds: 24 * 3600,
};

/** Who is trying: the client address the gateway saw, or a device key it verified a proof of. */
export type LockoutClient = { address: string } | { provenDeviceKey: string };

/** Both kinds of key, tagged so each gets its own policy; stored with an OTP challenge as they are. */
const CLIENT_PREFIX = "c:";
const ACCOUNT_PREFIX = "a:";

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
export function afterFailure(
  state: LockoutState | undefined,
  nowMs: number,
  policy: LockoutPolicy,
): { state: LockoutState; lockedForSeconds: number | null } {
  const current = state ?? { failures: 0, level: 0, lockedUntilMs: 0 };
  const failures = current.failures + 1;
  if (failures < policy.maxFailures) return { state: { ...current, failures }, lockedForSeconds: null };
  const lockedForSeconds = Math.min(policy.baseLockSeconds * 2 ** current.level, policy.maxLockSeconds);
  return { state: { failures: 0, level: current.level + 1, lockedUntilMs: nowMs + lockedForSeconds * 1000 }, lockedForSeconds };
}

export class Lockout {
  private readonly store: LockoutStore;
  private readonly pepper: string;
  private readonly now: () => Date;
  private readonly policy: LockoutPolicy;
  private readonly accountPolicy: LockoutPolicy;

  constructor(
    store: LockoutStore,
    pepper: string,
    now: () => Date,
    policy: LockoutPolicy = DEFAULT_LOCKOUT_POLICY,
    accountPolicy: LockoutPolicy = DEFAULT_ACCOUNT_LOCKOUT_POLICY,
  ) {
    this.store = store;
    this.pepper = pepper;
    this.now = now;
    this.policy = policy;
    this.accountPolicy = accountPolicy;
  }

  private hash(text: string): string {
    return createHmac("sha256", this.pepper).update(text).digest("base64url");
  }

  /**
   * The keys a sign-in attempt is checked and counted on; the store never holds the email or the
   * address. `deviceRegistered`: the client proved a device key registered for this email's user —
   * then only the (email, device) key applies.
   */
  keysFor(email: string, client: LockoutClient, deviceRegistered = false): string[] {
    if ("provenDeviceKey" in client && deviceRegistered)
      return [`${CLIENT_PREFIX}${this.hash(`lockout\u0000device\u0000${email}\u0000${client.provenDeviceKey}`)}`];
    const address = "address" in client ? client.address : "unknown";
    return [
      `${CLIENT_PREFIX}${this.hash(`lockout\u0000client\u0000${email}\u0000${address}`)}`,
      `${ACCOUNT_PREFIX}${this.hash(`lockout\u0000${email}`)}`,
    ];
  }

  private policyOf(key: string): LockoutPolicy {
    return key.startsWith(ACCOUNT_PREFIX) ? this.accountPolicy : this.policy;
  }

  /** Seconds until the longest of the keys' locks ends, or 0 when none is locked. */
  async lockedForSeconds(keys: readonly string[]): Promise<number> {
    let longestMs = 0;
    for (const key of keys) {
      const state = await this.store.get(key);
      longestMs = Math.max(longestMs, (state?.lockedUntilMs ?? 0) - this.now().getTime());
    }
    return longestMs > 0 ? Math.ceil(longestMs / 1000) : 0;
  }

  /** Records a failure on every key; returns the longest lock it started, in seconds, or null. */
  async recordFailure(keys: readonly string[]): Promise<number | null> {
    let started: number | null = null;
    for (const key of keys) {
      const policy = this.policyOf(key);
      // Read-modify-write: a concurrent burst can lose a count; the gateway's rate limit bounds bursts.
      const next = afterFailure(await this.store.get(key), this.now().getTime(), policy);
      await this.store.put(key, next.state, policy.memorySeconds + (next.lockedForSeconds ?? 0));
      if (next.lockedForSeconds !== null) started = Math.max(started ?? 0, next.lockedForSeconds);
    }
    return started;
  }

  /**
   * After a verified sign-in, forgets this client's failures. The account-wide count stays until its
   * quiet period ends: the owner succeeding from home must not wipe out a guessing campaign's count.
   */
  async reset(keys: readonly string[]): Promise<void> {
    for (const key of keys) if (key.startsWith(CLIENT_PREFIX)) await this.store.clear(key);
  }
}
