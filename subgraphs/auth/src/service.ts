import { blindIndex, decrypt, encrypt, mask, type KeyRing } from "@vaultpay/crypto";
import { v7 as uuidv7 } from "uuid";
import type { Event } from "@vaultpay/events";
import {
  ACCESS_TOKEN,
  DomainError,
  canonicalUuid,
  isUuid,
  proofRequired,
  provenDeviceId,
  type Caller,
  type Logger,
  type Role,
} from "@vaultpay/kit";
import { authEvents } from "./events.ts";
import type { Lockout, LockoutClient } from "./lockout.ts";
import type { OtpChallenge, OtpChallenges, OtpPurpose } from "./otp.ts";
import type { PasswordHasher } from "./passwords.ts";
import { hashRefreshToken, isWellFormedRefreshToken, newRefreshToken, type AccessTokenSigner } from "./tokens.ts";
import { accountExistsMessage, otpMessage } from "./messages.ts";
import { isPlausiblePassword, parseDeviceId, parseEmail, parseNewPassword, parsePhone, personalInputs } from "./validation.ts";

/**
 * The auth domain: register, login with OTP MFA, sessions with rotating refresh tokens, devices,
 * lockout. Storage, Redis, the notifier and the clock are ports; no GraphQL, NATS or Prisma here.
 */

/** Associated data of the phone ciphertext: it opens only as a user's phone. */
export const PHONE_CONTEXT = "user.phone";
/** A session (and every refresh token in it) ends this long after the OTP login, refreshes or not. */
export const SESSION_TTL_SECONDS = 30 * 24 * 3600;
/**
 * A refresh token presented again within this long after its rotation gets the same successor the
 * first presentation got (two tabs refreshing at once) instead of revoking the session. Later, it
 * is reuse.
 */
export const REFRESH_REUSE_GRACE_SECONDS = 10;
export const USERS_PAGE_MAX = 100;
/** How long a customer is told to wait after a code could not be sent (a provider hiccup). */
export const OTP_DELIVERY_RETRY_AFTER_SECONDS = 30;

/** Associated data of a sealed successor: it opens only on the row of the token it replaced. */
function successorContext(oldTokenHash: string): string {
  return `refresh.successor:${oldTokenHash}`;
}

export interface UserRecord {
  id: string;
  email: string;
  role: Role;
  passwordHash: string;
  phoneEncrypted: string;
  createdAt: Date;
}

export interface NewUser {
  /** Given when something must be keyed by the user before the row exists (register's challenge). */
  id?: string;
  email: string;
  role: Role;
  passwordHash: string;
  phoneEncrypted: string;
  phoneBlindIndex: string;
}

/**
 * A device: `fingerprint` is what the client sends as deviceId / x-device-id. `trusted` is false
 * on the verified login that first recorded it and true from its next verified login on: a device
 * is trusted once it has come back, which is what a fraud rule wants to know.
 */
export interface DeviceRecord {
  id: string;
  fingerprint: string;
  label: string | null;
  trusted: boolean;
  firstSeenAt: Date;
  lastSeenAt: Date;
}

export interface SessionRecord {
  id: string;
  userId: string;
  deviceId: string;
  expiresAt: Date;
  revokedAt: Date | null;
}

export interface RefreshTokenRecord {
  tokenHash: string;
  /** The DPoP key the session is bound to; refresh needs a proof of it. Null: a bearer session. */
  dpopJkt: string | null;
  usedAt: Date | null;
  /** The sealed successor, kept while a second presentation may still get it (grace window). */
  successorEncrypted: string | null;
  expiresAt: Date;
  session: SessionRecord;
}

/**
 * What the gateway vouches for about the client of a sign-in (never a header the client chose):
 * the address it connected from, and the DPoP key it proved holding, if any.
 */
export interface SignInClient {
  address?: string | undefined;
  /** JWK thumbprint of the key of a DPoP proof the gateway verified for this request. */
  provenDeviceKey?: string | undefined;
}

function lockoutClient(client: SignInClient | undefined): LockoutClient {
  if (client?.provenDeviceKey) return { provenDeviceKey: client.provenDeviceKey };
  return { address: client?.address ?? "unknown" };
}

export interface StartedSession {
  sessionId: string;
  device: DeviceRecord;
  newDevice: boolean;
}

/** The auth database. Methods taking events append them in the same transaction as the change. */
export interface AuthStore {
  findUserByEmail(email: string): Promise<UserRecord | undefined>;
  findUserById(id: string): Promise<UserRecord | undefined>;
  /** Ordered by id (uuid v7, so by creation); `afterId` is exclusive. */
  listUsers(page: { first: number; afterId?: string | undefined }): Promise<UserRecord[]>;
  /** "duplicate" when the email is taken (checked by the unique constraint, so races are safe). */
  createUser(user: NewUser, events: (created: UserRecord) => Event[]): Promise<UserRecord | "duplicate">;
  /** Records (or re-sees) the device, creates the session and its first refresh token. */
  startSession(
    input: {
      userId: string;
      /** The device's id: "jkt:<thumbprint>" for a proven key, else the id the client claimed. */
      deviceId: string;
      /** What the client calls the device (its claimed id, for a proven key); null otherwise. */
      label: string | null;
      /** Binds the session's refresh tokens to this DPoP key. */
      dpopJkt: string | null;
      now: Date;
      expiresAt: Date;
      refreshTokenHash: string;
    },
    events: (started: StartedSession) => Event[],
  ): Promise<StartedSession>;
  findRefreshToken(tokenHash: string): Promise<RefreshTokenRecord | undefined>;
  /**
   * Marks the old token used, keeps its successor sealed on it and stores the successor, atomically;
   * false when it was already used. Successors sealed on tokens used before `forgetSealedBefore`
   * (in the same session) are erased: their grace window is over.
   */
  rotateRefreshToken(
    oldHash: string,
    next: { tokenHash: string; expiresAt: Date; successorEncrypted: string; dpopJkt: string | null },
    now: Date,
    forgetSealedBefore: Date,
  ): Promise<boolean>;
  /** Revokes a live session with its events; false when it was already revoked. */
  revokeSession(sessionId: string, reason: string, now: Date, events: Event[]): Promise<boolean>;
  listDevices(userId: string): Promise<DeviceRecord[]>;
  hasDevice(userId: string, fingerprint: string): Promise<boolean>;
  appendEvents(events: Event[]): Promise<void>;
}

/** Marks sessions revoked for everyone who verifies tokens (the gateway and subgraphs). */
export interface SessionRevocations {
  revoke(sessionId: string, ttlSeconds: number): Promise<void>;
  isRevoked(sessionId: string): Promise<boolean>;
}

export interface OutgoingMessage {
  to: string;
  channel: string;
  /** The email subject (messages.ts); SMS has none. */
  subject?: string | undefined;
  body: string;
  /** The OTP, when the message carries one (the dev mailbox shows it separately). */
  code: string | null;
}

/**
 * Where codes and notices go: the dev mailbox outside production, SMTP and an SMS provider
 * (notifiers.ts). Throws when the message could not be handed over.
 */
export interface Notifier {
  send(message: OutgoingMessage): Promise<void>;
}

export interface AuthPayload {
  accessToken: string;
  refreshToken: string;
  accessTokenExpiresAt: Date;
  user: UserRecord;
}

export interface AuthDeps {
  store: AuthStore;
  otp: OtpChallenges;
  lockout: Lockout;
  hasher: PasswordHasher;
  signer: AccessTokenSigner;
  revocations: SessionRevocations;
  notifier: Notifier;
  keyRing: KeyRing;
  logger: Logger;
  now?: () => Date;
  refreshGraceSeconds?: number;
}

function unauthenticated(message: string): DomainError {
  return new DomainError("UNAUTHENTICATED", message);
}

function locked(seconds: number): DomainError {
  return new DomainError("RATE_LIMITED", "Too many failed sign-in attempts; try again later", { retryAfterSeconds: seconds });
}

const OTP_FAILURE_MESSAGES = {
  otp_expired: "The code has expired or was already used; sign in again",
  invalid_otp: "The code is not correct",
  otp_burned: "Too many wrong codes; this code no longer works, sign in again",
  device_mismatch: "The code was requested from another device",
} as const;

export class AuthService {
  private readonly now: () => Date;
  private readonly refreshGraceMs: number;

  private readonly deps: AuthDeps;

  constructor(deps: AuthDeps) {
    this.deps = deps;

    this.now = deps.now ?? (() => new Date());
    this.refreshGraceMs = (deps.refreshGraceSeconds ?? REFRESH_REUSE_GRACE_SECONDS) * 1000;
  }

  /**
   * Always answers with a challenge of the same shape. A taken email creates nothing and gets a
   * decoy challenge no code opens; its owner is told by the notifier instead. The password is hashed
   * and the phone sealed either way, so both paths take about the same time.
   */
  async register(input: {
    email: string;
    phone: string;
    password: string;
    deviceId: string;
    client?: SignInClient;
  }): Promise<OtpChallenge> {
    const email = parseEmail(input.email);
    const phone = parsePhone(input.phone);
    const password = parseNewPassword(input.password, "password", personalInputs({ email, phone }));
    const deviceId = parseDeviceId(input.deviceId);
    const { keyRing, store } = this.deps;
    const passwordHash = await this.deps.hasher.hash(password);
    const lockoutKeys = this.deps.lockout.keysFor(email, lockoutClient(input.client));
    // The challenge first, then the code, then the user: while Redis or the mail provider is
    // away nothing is written and the customer's retry registers afresh, instead of meeting "you
    // already have an account" for an account whose code never went out. Two registrations of one
    // new address racing: both codes go out, the loser's user never exists, so its code opens
    // nothing.
    const userId = uuidv7();
    const issued = await this.deps.otp.issue({ userId, lockoutKeys, deviceId, purpose: "register" });
    if (await store.findUserByEmail(email)) {
      const notice = accountExistsMessage();
      await this.deliver({ to: email, channel: this.deps.otp.channel, subject: notice.subject, body: notice.text, code: null }, null);
      return issued.challenge;
    }
    await this.sendCode(email, issued, null);
    const created = await store.createUser(
      {
        id: userId,
        email,
        role: "CUSTOMER",
        passwordHash,
        phoneEncrypted: encrypt(keyRing, phone, PHONE_CONTEXT),
        phoneBlindIndex: blindIndex(keyRing, phone, PHONE_CONTEXT),
      },
      (user) => [authEvents.userCreated(user.id, user.role)],
    );
    if (created !== "duplicate") this.deps.logger.info({ userId: created.id }, "user registered");
    return issued.challenge;
  }

  /**
   * Checks the password, then sends an OTP. An unknown email and a wrong password give the same
   * error after the same argon2 work; both count towards the lockout of (email, client) and of the
   * email. A client proving a device key registered for the user is locked only on (email, device):
   * nobody else's failures can keep the customer's own device out.
   */
  async login(input: { email: string; password: string; deviceId: string; client?: SignInClient }): Promise<OtpChallenge> {
    const email = parseEmail(input.email);
    const deviceId = parseDeviceId(input.deviceId);
    const { lockout, store, hasher } = this.deps;
    const user = await store.findUserByEmail(email);
    const provenKey = input.client?.provenDeviceKey;
    const deviceRegistered = user !== undefined && provenKey !== undefined && (await store.hasDevice(user.id, provenDeviceId(provenKey)));
    const lockoutKeys = lockout.keysFor(email, lockoutClient(input.client), deviceRegistered);
    const lockedFor = await lockout.lockedForSeconds(lockoutKeys);
    if (lockedFor > 0) {
      await store.appendEvents([authEvents.loginFailed(null, "locked", null)]);
      throw locked(lockedFor);
    }
    const plausible = isPlausiblePassword(input.password);
    let valid = false;
    if (user && plausible) valid = await hasher.verify(user.passwordHash, input.password);
    else await hasher.verifyNobody(plausible ? input.password : "");
    if (!valid) {
      const lockedForSeconds = await lockout.recordFailure(lockoutKeys);
      await store.appendEvents([authEvents.loginFailed(user?.id ?? null, "invalid_credentials", lockedForSeconds)]);
      if (lockedForSeconds) throw locked(lockedForSeconds);
      throw unauthenticated("Email or password is incorrect");
    }
    return this.challenge(user!.id, email, lockoutKeys, deviceId, "login");
  }

  private async challenge(
    userId: string,
    email: string,
    lockoutKeys: string[],
    deviceId: string,
    purpose: OtpPurpose,
  ): Promise<OtpChallenge> {
    const issued = await this.deps.otp.issue({ userId, lockoutKeys, deviceId, purpose });
    // The challenge stays live if the code does not go out: a mail that did arrive late still works.
    await this.sendCode(email, issued, issued.challenge.challengeId);
    return issued.challenge;
  }

  private async sendCode(
    email: string,
    { challenge, code }: { challenge: OtpChallenge; code: string },
    liveChallengeId: string | null,
  ): Promise<void> {
    const content = otpMessage(code, this.deps.otp.ttlSeconds);
    await this.deliver({ to: email, channel: challenge.channel, subject: content.subject, body: content.text, code }, liveChallengeId);
  }

  /**
   * Hands a sign-in message to the notifier. A provider that cannot take it is the platform's
   * problem, not the customer's: UNAVAILABLE with a retry time (never INTERNAL), nothing counted
   * against the lockout. `liveChallengeId` is given when the challenge stays usable (login).
   */
  private async deliver(message: OutgoingMessage, liveChallengeId: string | null): Promise<void> {
    try {
      await this.deps.notifier.send(message);
    } catch (error) {
      this.deps.logger.warn({ channel: message.channel, reason: (error as Error).message }, "sign-in message not delivered");
      throw new DomainError("UNAVAILABLE", "We could not send your code just now; try again in a minute", {
        retryAfterSeconds: OTP_DELIVERY_RETRY_AFTER_SECONDS,
        reason: "OTP_DELIVERY_FAILED",
        ...(liveChallengeId ? { challengeId: liveChallengeId } : {}),
      });
    }
  }

  /**
   * Completes MFA: a right code on the right device starts a session bound to that device. A client
   * that proved a DPoP key with this request registers the key as the device ("jkt:<thumbprint>",
   * its claimed id as the label) and gets tokens bound to it; without a proof, a bearer session.
   */
  async verifyOtp(input: { challengeId: string; code: string; deviceId: string; client?: SignInClient }): Promise<AuthPayload> {
    const deviceId = parseDeviceId(input.deviceId);
    if (!/^[0-9]{6}$/.test(input.code)) throw new DomainError("BAD_USER_INPUT", "The code is 6 digits", { field: "code" });
    const { otp, lockout, store } = this.deps;
    // Challenges are kept under the id as issued (lower case); the same id in upper case is the same challenge.
    const challengeId = canonicalUuid(input.challengeId);
    const pending = isUuid(challengeId) ? await otp.find(challengeId) : undefined;
    if (pending) {
      const lockedFor = await lockout.lockedForSeconds(pending.lockoutKeys);
      if (lockedFor > 0) {
        await store.appendEvents([authEvents.loginFailed(pending.userId, "locked", null)]);
        throw locked(lockedFor);
      }
    }
    const result = pending
      ? await otp.verify(challengeId, input.code, deviceId)
      : ({ ok: false, reason: "otp_expired", record: undefined } as const);
    if (!result.ok) {
      const lockedForSeconds =
        result.record && result.reason !== "otp_expired" ? await lockout.recordFailure(result.record.lockoutKeys) : null;
      await store.appendEvents([authEvents.loginFailed(result.record?.userId ?? null, result.reason, lockedForSeconds)]);
      if (lockedForSeconds) throw locked(lockedForSeconds);
      throw unauthenticated(OTP_FAILURE_MESSAGES[result.reason]);
    }
    await lockout.reset(result.record.lockoutKeys);
    const user = result.record.userId ? await store.findUserById(result.record.userId) : undefined;
    if (!user) throw unauthenticated(OTP_FAILURE_MESSAGES.otp_expired);
    return this.startSession(user, deviceId, input.client?.provenDeviceKey, result.record.purpose);
  }

  private async startSession(
    user: UserRecord,
    claimedDeviceId: string,
    deviceKey: string | undefined,
    method: OtpPurpose,
  ): Promise<AuthPayload> {
    const now = this.now();
    const refreshToken = newRefreshToken();
    const deviceId = deviceKey ? provenDeviceId(deviceKey) : claimedDeviceId;
    const started = await this.deps.store.startSession(
      {
        userId: user.id,
        deviceId,
        label: deviceKey ? claimedDeviceId : null,
        dpopJkt: deviceKey ?? null,
        now,
        expiresAt: new Date(now.getTime() + SESSION_TTL_SECONDS * 1000),
        refreshTokenHash: hashRefreshToken(refreshToken),
      },
      ({ sessionId, device, newDevice }) => [
        ...(newDevice ? [authEvents.deviceRegistered(user.id, device.id, deviceId)] : []),
        authEvents.loginSucceeded({ userId: user.id, sessionId, deviceId, method, newDevice, deviceProven: deviceKey !== undefined }),
      ],
    );
    this.deps.logger.info(
      { userId: user.id, sessionId: started.sessionId, newDevice: started.newDevice, deviceBound: deviceKey !== undefined },
      "session started",
    );
    const access = await this.deps.signer.sign({ userId: user.id, role: user.role, sessionId: started.sessionId, deviceId, deviceKey });
    return { accessToken: access.token, refreshToken, accessTokenExpiresAt: access.expiresAt, user };
  }

  /**
   * Exchanges a refresh token for a new pair (rotation). A token used before revokes its whole
   * session (someone holds a copy), except within the grace window after its rotation, where it
   * gets the very successor the first use got: one session never has two live refresh tokens, so
   * a thief racing the owner cannot start a family of their own that reuse detection never sees.
   *
   * Why keep the successor (sealed) rather than refuse the second use: two tabs of the same client
   * refreshing at once is the normal case the grace window exists for, and refusing one would sign
   * it out. The plaintext exists only as AES-256-GCM ciphertext with the key ring auth already uses
   * for phones, bound to the old token's hash, and is erased after the window; a database dump
   * alone reveals no usable token.
   */
  async refreshSession(input: { refreshToken: string; deviceId: string; client?: SignInClient }): Promise<AuthPayload> {
    parseDeviceId(input.deviceId);
    const invalid = unauthenticated("Refresh token is not valid; sign in again");
    if (!isWellFormedRefreshToken(input.refreshToken)) throw invalid;
    const { store, keyRing } = this.deps;
    const now = this.now();
    const token = await store.findRefreshToken(hashRefreshToken(input.refreshToken));
    if (!token) throw invalid;
    const { session } = token;
    if (session.revokedAt || session.expiresAt <= now || token.expiresAt <= now) throw invalid;
    // A stolen token replayed from elsewhere fails without touching the owner's session: a bound
    // session needs a proof of its key, a bearer one the device id it signed in with.
    if (token.dpopJkt) {
      if (input.client?.provenDeviceKey !== token.dpopJkt) throw proofRequired();
    } else if (session.deviceId !== input.deviceId) throw invalid;
    const user = await store.findUserById(session.userId);
    if (!user) throw invalid;
    let refreshToken = newRefreshToken();
    const sealContext = successorContext(token.tokenHash);
    const next = {
      tokenHash: hashRefreshToken(refreshToken),
      expiresAt: session.expiresAt,
      successorEncrypted: encrypt(keyRing, refreshToken, sealContext),
      dpopJkt: token.dpopJkt,
    };
    const graceStart = new Date(now.getTime() - this.refreshGraceMs);
    if (!(await store.rotateRefreshToken(token.tokenHash, next, now, graceStart))) {
      // Read again: a concurrent rotation committed after our first read.
      const rotated = await store.findRefreshToken(token.tokenHash);
      const usedAtMs = rotated?.usedAt?.getTime() ?? token.usedAt?.getTime() ?? 0;
      if (now.getTime() - usedAtMs > this.refreshGraceMs) {
        await this.revoke(session, "refresh_token_reuse");
        this.deps.logger.warn({ userId: session.userId, sessionId: session.id }, "refresh token reused: session revoked");
        throw invalid;
      }
      // Within the grace window without a sealed successor (rotated before successors were kept):
      // refused, never a second family.
      if (!rotated?.successorEncrypted) throw invalid;
      refreshToken = decrypt(keyRing, rotated.successorEncrypted, sealContext);
    }
    const access = await this.deps.signer.sign({
      userId: user.id,
      role: user.role,
      sessionId: session.id,
      deviceId: session.deviceId,
      deviceKey: token.dpopJkt ?? undefined,
    });
    return { accessToken: access.token, refreshToken, accessTokenExpiresAt: access.expiresAt, user };
  }

  async logout(caller: Caller | undefined): Promise<boolean> {
    const signedIn = await this.requireCaller(caller);
    await this.revoke({ id: signedIn.sessionId, userId: signedIn.userId }, "logout");
    return true;
  }

  private async revoke(session: { id: string; userId: string }, reason: "logout" | "refresh_token_reuse"): Promise<void> {
    await this.deps.store.revokeSession(session.id, reason, this.now(), [authEvents.sessionRevoked(session.userId, session.id, reason)]);
    // Access tokens of the session stay valid by signature until they expire: this key refuses them.
    await this.deps.revocations.revoke(session.id, ACCESS_TOKEN.ttlSeconds);
  }

  /** A verified caller whose session is still live (zero trust: checked here, not only at the gateway). */
  async requireCaller(caller: Caller | undefined): Promise<Caller> {
    if (!caller) throw unauthenticated("Sign in first");
    if (await this.deps.revocations.isRevoked(caller.sessionId)) throw unauthenticated("Session has ended; sign in again");
    return caller;
  }

  async me(caller: Caller | undefined): Promise<UserRecord> {
    const signedIn = await this.requireCaller(caller);
    const user = await this.deps.store.findUserById(signedIn.userId);
    if (!user) throw unauthenticated("Sign in first");
    return user;
  }

  /** ADMIN only: the token's role and the stored role must both say so. */
  async users(caller: Caller | undefined, page: { first: number; after?: string | null | undefined }): Promise<UserRecord[]> {
    const signedIn = await this.requireCaller(caller);
    const self = signedIn.role === "ADMIN" ? await this.deps.store.findUserById(signedIn.userId) : undefined;
    if (self?.role !== "ADMIN") throw new DomainError("FORBIDDEN", "Only an administrator can list users");
    if (!Number.isInteger(page.first) || page.first < 1 || page.first > USERS_PAGE_MAX) {
      throw new DomainError("BAD_USER_INPUT", `first must be between 1 and ${USERS_PAGE_MAX}`, { field: "first" });
    }
    if (page.after != null && !isUuid(page.after)) throw new DomainError("BAD_USER_INPUT", "after is not a user id", { field: "after" });
    return this.deps.store.listUsers({ first: page.first, afterId: page.after ?? undefined });
  }

  /** The user as other subgraphs reference it (entity resolution); fields enforce visibility. */
  async userById(id: string): Promise<UserRecord | undefined> {
    return isUuid(id) ? this.deps.store.findUserById(id) : undefined;
  }

  /** Whether the caller may read a user's personal fields: the user themselves or an ADMIN. */
  async canSee(caller: Caller | undefined, userId: string): Promise<boolean> {
    if (!caller || (caller.userId !== userId && caller.role !== "ADMIN")) return false;
    return !(await this.deps.revocations.isRevoked(caller.sessionId));
  }

  /**
   * Where to reach a user (transfer notices), from their stored email and sealed phone (read with
   * the notice, in its claim): the phone decrypted when there is one; undefined for no user.
   */
  contactFrom(stored: { email: string | null; phone_encrypted: string | null }): { email: string; phone: string | null } | undefined {
    if (stored.email === null || stored.phone_encrypted === null) return undefined;
    const phone = decrypt(this.deps.keyRing, stored.phone_encrypted, PHONE_CONTEXT);
    return { email: stored.email, phone: phone || null };
  }

  /** Null when the user has no phone (the seeded administrator). */
  maskedPhone(user: UserRecord): string | null {
    const phone = decrypt(this.deps.keyRing, user.phoneEncrypted, PHONE_CONTEXT);
    return phone ? mask(phone, 4) : null;
  }

  devices(userId: string): Promise<DeviceRecord[]> {
    return this.deps.store.listDevices(userId);
  }

  /**
   * Creates the administrator once: an existing account with that email is left alone (it is never
   * promoted, since whoever registered it first would become ADMIN).
   */
  async ensureAdmin(emailInput: string, password: string): Promise<"created" | "exists"> {
    const email = parseEmail(emailInput, "ADMIN_EMAIL");
    const existing = await this.deps.store.findUserByEmail(email);
    if (existing) {
      if (existing.role !== "ADMIN")
        this.deps.logger.warn({ userId: existing.id }, "ADMIN_EMAIL belongs to a non-admin user; not promoted");
      return "exists";
    }
    // The admin has no phone yet; an empty value is sealed so the column stays encrypted-only.
    const phone = "";
    const created = await this.deps.store.createUser(
      {
        email,
        role: "ADMIN",
        passwordHash: await this.deps.hasher.hash(parseNewPassword(password, "ADMIN_PASSWORD", personalInputs({ email }))),
        phoneEncrypted: encrypt(this.deps.keyRing, phone, PHONE_CONTEXT),
        phoneBlindIndex: blindIndex(this.deps.keyRing, phone, PHONE_CONTEXT),
      },
      (user) => [authEvents.userCreated(user.id, user.role)],
    );
    if (created === "duplicate") return "exists";
    this.deps.logger.info({ userId: created.id }, "administrator created");
    return "created";
  }
}
