import { createHmac, randomInt, randomUUID } from "node:crypto";
import { secretsEqual } from "@vaultpay/crypto";

export const OTP_TTL_SECONDS = 5 * 60;
export const OTP_MAX_ATTEMPTS = 5;
export const OTP_DIGITS = 6;

export type OtpPurpose = "register" | "login";

/** What is kept per challenge: the code only as an HMAC with the pepper. */
export interface OtpChallengeRecord {
  challengeId: string;
  /** Null for a decoy challenge (register with a taken email): no code can ever pass it. */
  userId: string | null;
  /** The lockout keys of the sign-in the challenge was made for (see Lockout.keysFor). */
  lockoutKeys: string[];
  deviceId: string;
  purpose: OtpPurpose;
  codeHash: string;
  expiresAtMs: number;
}

export interface OtpStore {
  save(record: OtpChallengeRecord, ttlSeconds: number): Promise<void>;
  get(challengeId: string): Promise<(OtpChallengeRecord & { attempts: number }) | undefined>;
  /** Atomically counts one more attempt; returns the count including this one. */
  countAttempt(challengeId: string): Promise<number>;
  /** Deletes the challenge; true only for the one caller that deleted it (one-time use). */
  consume(challengeId: string): Promise<boolean>;
}

export interface OtpChallenge {
  challengeId: string;
  expiresAt: Date;
  channel: string;
}

export type OtpVerification =
  | { ok: true; record: OtpChallengeRecord }
  | { ok: false; reason: "otp_expired" | "invalid_otp" | "otp_burned" | "device_mismatch"; record: OtpChallengeRecord | undefined };

export interface OtpOptions {
  store: OtpStore;
  pepper: string;
  now: () => Date;
  ttlSeconds?: number;
  maxAttempts?: number;
  channel?: string;
}

/**
 * One-time codes for MFA: 6 digits from a CSPRNG, kept hashed with a 5-minute TTL, at most 5 tries
 * (then the challenge is burned), bound to the device that asked for it, deleted on success.
 */
export class OtpChallenges {
  readonly ttlSeconds: number;
  readonly maxAttempts: number;
  readonly channel: string;

  private readonly options: OtpOptions;

  constructor(options: OtpOptions) {
    this.options = options;

    this.ttlSeconds = options.ttlSeconds ?? OTP_TTL_SECONDS;
    this.maxAttempts = options.maxAttempts ?? OTP_MAX_ATTEMPTS;
    this.channel = options.channel ?? "email";
  }

  private hash(challengeId: string, code: string): string {
    return createHmac("sha256", this.options.pepper).update(`${challengeId}\u0000${code}`).digest("base64url");
  }

  /** Creates a challenge; the code is returned once, for the notifier, and never stored. */
  async issue(input: {
    userId: string | null;
    lockoutKeys: string[];
    deviceId: string;
    purpose: OtpPurpose;
  }): Promise<{ challenge: OtpChallenge; code: string }> {
    const challengeId = randomUUID();
    const code = randomInt(0, 10 ** OTP_DIGITS)
      .toString()
      .padStart(OTP_DIGITS, "0");
    const expiresAtMs = this.options.now().getTime() + this.ttlSeconds * 1000;
    await this.options.store.save({ challengeId, ...input, codeHash: this.hash(challengeId, code), expiresAtMs }, this.ttlSeconds);
    return { challenge: { challengeId, expiresAt: new Date(expiresAtMs), channel: this.channel }, code };
  }

  /** The stored challenge, for the caller to check a lockout before spending an attempt. */
  async find(challengeId: string): Promise<OtpChallengeRecord | undefined> {
    const record = await this.options.store.get(challengeId);
    return record && record.expiresAtMs > this.options.now().getTime() ? record : undefined;
  }

  async verify(challengeId: string, code: string, deviceId: string): Promise<OtpVerification> {
    const { store } = this.options;
    const record = await store.get(challengeId);
    if (!record || record.expiresAtMs <= this.options.now().getTime()) return { ok: false, reason: "otp_expired", record: undefined };
    const attempt = await store.countAttempt(challengeId);
    if (attempt > this.maxAttempts) {
      await store.consume(challengeId);
      return { ok: false, reason: "otp_burned", record };
    }
    const lastAttempt = attempt >= this.maxAttempts;
    if (record.deviceId !== deviceId) {
      if (lastAttempt) await store.consume(challengeId);
      return { ok: false, reason: lastAttempt ? "otp_burned" : "device_mismatch", record };
    }
    const matches = secretsEqual(this.hash(challengeId, code), record.codeHash) && record.userId !== null;
    if (!matches) {
      if (lastAttempt) await store.consume(challengeId);
      return { ok: false, reason: lastAttempt ? "otp_burned" : "invalid_otp", record };
    }
    // Two concurrent right answers: only the one that deletes the challenge wins.
    if (!(await store.consume(challengeId))) return { ok: false, reason: "otp_expired", record: undefined };
    return { ok: true, record };
  }
}
