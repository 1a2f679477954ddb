import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from "jose";
import { DomainError } from "./errors.ts";
import { pooledRandomBytes } from "./random.ts";

/**
 * The access-token contract between auth (which signs), the gateway and every subgraph (which
 * verify: zero trust, a subgraph does not take the gateway's word for who the caller is).
 */
export const ACCESS_TOKEN = {
  issuer: "vaultpay-auth",
  audience: "vaultpay",
  algorithm: "ES256",
  ttlSeconds: 15 * 60,
} as const;

export type Role = "CUSTOMER" | "ADMIN";

export interface Caller {
  userId: string;
  role: Role;
  sessionId: string;
  deviceId: string;
  tokenId: string;
  /**
   * `cnf.jkt`: the thumbprint of the DPoP key the token is bound to. A bound token is refused
   * without a proof of that key (the gateway checks the proof; subgraphs check its assertion).
   */
  boundDeviceKey?: string | undefined;
}

/** Where auth serves its public keys, relative to its HTTP origin. */
export const JWKS_PATH = "/.well-known/jwks.json";

/** Redis key that marks a session revoked (logout, refresh-token reuse) until its tokens expire. */
export function revokedSessionKey(sessionId: string): string {
  return `auth:revoked-session:${sessionId}`;
}

export type TokenVerifier = (authorization: string | undefined) => Promise<Caller | undefined>;

/** Whether auth has revoked a session, read from the Redis key it writes. */
export function sessionRevocationsIn(redis: { exists(key: string): Promise<number> }): (sessionId: string) => Promise<boolean> {
  return async (sessionId) => (await redis.exists(revokedSessionKey(sessionId))) === 1;
}

/**
 * The caller of an access token (undefined without one), refusing a session auth has revoked
 * (logout, refresh-token reuse) although its tokens have not expired. The gateway and every
 * subgraph run this same check: a subgraph does not take the gateway's word for it.
 */
export async function verifyLiveSession(
  authorization: string | undefined,
  checks: { verifyToken: TokenVerifier; isSessionRevoked: (sessionId: string) => Promise<boolean> },
  /**
   * Work for the verified caller that may run while the session is checked (the gateway's rate
   * limit): both go to Redis at once, one wait instead of two. A revoked session is reported
   * before anything it throws.
   */
  alongside?: (caller: Caller | undefined) => Promise<void>,
): Promise<Caller | undefined> {
  const caller = await checks.verifyToken(authorization);
  const [revoked, other] = await Promise.allSettled([
    caller ? checks.isSessionRevoked(caller.sessionId) : Promise.resolve(false),
    alongside ? alongside(caller) : Promise.resolve(),
  ]);
  if (revoked.status === "rejected") throw revoked.reason;
  if (revoked.value) throw new DomainError("UNAUTHENTICATED", "Session has ended; sign in again");
  if (other.status === "rejected") throw other.reason;
  return caller;
}

/**
 * Tokens verified lately, by their exact text (signature included, so no other text can hit an
 * entry): a client sends the same access token with every request of its lifetime, and the
 * signature check (ES256 through WebCrypto) was a tenth of a subgraph's CPU in a profile. An entry
 * lives at most VERIFIED_TOKEN_TTL_MS and never past the token's exp, so a key auth withdraws stops
 * working within that time. Revocation is not cached: verifyLiveSession asks Redis every time.
 */
const VERIFIED_TOKEN_TTL_MS = 60_000;
const VERIFIED_TOKENS_MAX = 10_000;

class VerifiedTokens {
  private readonly entries = new Map<string, { caller: Caller; until: number }>();

  get(token: string): Caller | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    if (Date.now() >= entry.until) {
      this.entries.delete(token);
      return undefined;
    }
    return { ...entry.caller };
  }

  set(token: string, caller: Caller, expiresAtMs: number): void {
    // The oldest entry goes first (a Map iterates in insertion order): memory stays bounded.
    if (this.entries.size >= VERIFIED_TOKENS_MAX) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(token, { caller, until: Math.min(expiresAtMs, Date.now() + VERIFIED_TOKEN_TTL_MS) });
  }
}

/**
 * Verifies `Authorization: Bearer <jwt>` against auth's JWKS (cached by jose, refetched on an
 * unknown kid). No header → anonymous (undefined); a bad token → UNAUTHENTICATED, never anonymous,
 * so a broken token cannot fall back to public access silently.
 */
export function createTokenVerifier(jwksUrl: string | JWTVerifyGetKey): TokenVerifier {
  const keys =
    typeof jwksUrl === "string"
      ? createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 5_000, cacheMaxAge: 10 * 60_000, timeoutDuration: 15_000 })
      : jwksUrl;
  const verified = new VerifiedTokens();
  return async (authorization) => {
    if (!authorization) return undefined;
    const match = /^(?:Bearer|DPoP) ([A-Za-z0-9._~+/=-]{10,4096})$/.exec(authorization.trim());
    if (!match) throw new DomainError("UNAUTHENTICATED", "Authorization must be a Bearer (or DPoP) token");
    const token = match[1]!;
    const known = verified.get(token);
    if (known) return known;
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: ACCESS_TOKEN.issuer,
        audience: ACCESS_TOKEN.audience,
        algorithms: [ACCESS_TOKEN.algorithm],
        requiredClaims: ["sub", "exp", "iat", "jti", "sid", "did", "role"],
      });
      const role = payload.role;
      if (role !== "CUSTOMER" && role !== "ADMIN") throw new DomainError("UNAUTHENTICATED", "Token has no valid role");
      const confirmation = payload.cnf as { jkt?: unknown } | undefined;
      if (confirmation !== undefined && (typeof confirmation !== "object" || typeof confirmation?.jkt !== "string")) {
        throw new DomainError("UNAUTHENTICATED", "Token has an unreadable cnf claim");
      }
      const caller: Caller = {
        boundDeviceKey: confirmation?.jkt as string | undefined,
        userId: String(payload.sub),
        role,
        sessionId: String(payload.sid),
        deviceId: String(payload.did),
        tokenId: String(payload.jti),
      };
      verified.set(token, caller, Number(payload.exp) * 1000);
      return { ...caller };
    } catch (error) {
      if (error instanceof DomainError) throw error;
      // Auth's key set unreachable or broken is our fault, not the caller's: not UNAUTHENTICATED.
      const keysUnavailable = error instanceof joseErrors.JWKSTimeout || error instanceof joseErrors.JWKSInvalid;
      if (!(error instanceof joseErrors.JOSEError) || keysUnavailable) throw error;
      const expired = error instanceof joseErrors.JWTExpired;
      throw new DomainError("UNAUTHENTICATED", expired ? "Access token expired" : "Access token is not valid");
    }
  };
}

/**
 * Proof that a request came through the gateway: `<unix seconds>.<nonce>.<hmac>` over the time, a
 * random nonce, the correlation id, the DPoP key the gateway verified a proof of (empty when none)
 * and the SHA-256 of the exact body it sends, with a secret only the gateway and the subgraphs
 * hold. Subgraphs refuse requests without a fresh one, so nothing reaches them around the gateway's
 * rules and rate limits; they believe a proven device key only when the gateway vouched for it
 * here; a header captured on the internal network cannot carry another query (the body is
 * covered); and it cannot be sent again either: a subgraph records each nonce it accepted in Redis
 * (assertionNonceKey) for as long as the assertion could still be fresh, and refuses it a second time.
 */
export const GATEWAY_ASSERTION_HEADER = "x-vaultpay-gateway";
const ASSERTION_MAX_AGE_SECONDS = 60;
/**
 * How long a subgraph must remember an accepted nonce: an assertion is fresh from 60 s before its
 * time to 60 s after it (clocks differ both ways), so a nonce seen at any moment of that window
 * is remembered past its end.
 */
export const ASSERTION_NONCE_TTL_SECONDS = 2 * ASSERTION_MAX_AGE_SECONDS + 1;
const NONCE_PATTERN = /^[A-Za-z0-9_-]{22}$/;

/**
 * Redis key under which a subgraph records an assertion nonce it accepted (SET NX EX). One key for
 * every subgraph: the MAC does not name the subgraph, so an assertion one subgraph accepted must
 * not be accepted by another either.
 */
export function assertionNonceKey(nonce: string): string {
  return `gateway-assertion:nonce:${nonce}`;
}

/** What an assertion vouches for. `body` is the request body exactly as sent (JSON text). */
export interface AssertedRequest {
  correlationId: string;
  body: string;
  provenDeviceKey?: string | undefined;
}

function assertionMac(secret: string, seconds: number, nonce: string, request: AssertedRequest): Buffer {
  const bodyHash = createHash("sha256").update(request.body, "utf8").digest("base64url");
  return createHmac("sha256", secret)
    .update(`${seconds}.${nonce}.${request.correlationId}.${request.provenDeviceKey ?? ""}.${bodyHash}`)
    .digest();
}

/** A new assertion for one request: a fresh nonce every call (128 random bits). */
export function signGatewayAssertion(secret: string, request: AssertedRequest, nowMs = Date.now()): string {
  const seconds = Math.floor(nowMs / 1000);
  const nonce = pooledRandomBytes(16).toString("base64url");
  return `${seconds}.${nonce}.${assertionMac(secret, seconds, nonce, request).toString("base64url")}`;
}

/**
 * The assertion's nonce when it is fresh and its MAC covers this request, else undefined. The
 * caller still has to check the nonce was not used before (assertionNonceKey).
 */
export function verifyGatewayAssertion(
  secret: string,
  assertion: string | undefined,
  request: AssertedRequest,
  nowMs = Date.now(),
): string | undefined {
  if (!assertion) return undefined;
  const [secondsText, nonce, mac, ...rest] = assertion.split(".");
  const seconds = Number(secondsText);
  if (!Number.isInteger(seconds) || !nonce || !NONCE_PATTERN.test(nonce) || !mac || rest.length > 0) return undefined;
  if (Math.abs(nowMs / 1000 - seconds) > ASSERTION_MAX_AGE_SECONDS) return undefined;
  const expected = assertionMac(secret, seconds, nonce, request);
  const given = Buffer.from(mac, "base64url");
  return given.length === expected.length && timingSafeEqual(given, expected) ? nonce : undefined;
}

/** The access token inside an Authorization header (either scheme), for a DPoP proof's ath. */
export function accessTokenOf(authorization: string | undefined): string | undefined {
  return authorization ? /^(?:Bearer|DPoP) (\S+)$/.exec(authorization.trim())?.[1] : undefined;
}

/** The verified caller, or UNAUTHENTICATED: subgraphs check this themselves (zero trust). */
export function requireCaller(caller: Caller | undefined): Caller {
  if (!caller) throw new DomainError("UNAUTHENTICATED", "Sign in first");
  return caller;
}

/** An ADMIN caller, or UNAUTHENTICATED / FORBIDDEN, whatever the gateway's rules already said. */
export function requireAdmin(caller: Caller | undefined, what = "This"): Caller {
  const signedIn = requireCaller(caller);
  if (signedIn.role !== "ADMIN") throw new DomainError("FORBIDDEN", `${what} is for administrators only`);
  return signedIn;
}
