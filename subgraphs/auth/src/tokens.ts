import { createHash, randomBytes } from "node:crypto";
import { SignJWT, importJWK, type JWK } from "jose";
import { ACCESS_TOKEN, type Role } from "@vaultpay/kit";

export interface AccessClaims {
  userId: string;
  role: Role;
  sessionId: string;
  deviceId: string;
  /** The DPoP key's thumbprint the token is bound to (`cnf.jkt`, RFC 9449 §6); none for bearer. */
  deviceKey?: string | undefined;
}

export interface AccessTokenSigner {
  sign(claims: AccessClaims): Promise<{ token: string; expiresAt: Date }>;
  /** The public JWKS document: only public key fields. */
  jwks(): { keys: JWK[] };
}

/**
 * Signs access tokens per kit's ACCESS_TOKEN contract (issuer, audience, ES256, 15 minutes) with
 * claims sub, role, sid, did (and cnf.jkt for a device-bound session) and a fresh jti, and a `kid` header so verifiers find the key in JWKS.
 */
export async function createAccessTokenSigner(
  privateJwkJson: string,
  keyId: string,
  now: () => Date = () => new Date(),
): Promise<AccessTokenSigner> {
  const privateJwk = JSON.parse(privateJwkJson) as JWK;
  const key = await importJWK({ ...privateJwk, alg: ACCESS_TOKEN.algorithm }, ACCESS_TOKEN.algorithm);
  const publicJwk: JWK = {
    kty: privateJwk.kty!,
    crv: privateJwk.crv!,
    x: privateJwk.x!,
    y: privateJwk.y!,
    kid: keyId,
    alg: ACCESS_TOKEN.algorithm,
    use: "sig",
  };
  return {
    async sign(claims) {
      const issuedAtSeconds = Math.floor(now().getTime() / 1000);
      const expiresAtSeconds = issuedAtSeconds + ACCESS_TOKEN.ttlSeconds;
      const token = await new SignJWT({
        role: claims.role,
        sid: claims.sessionId,
        did: claims.deviceId,
        ...(claims.deviceKey ? { cnf: { jkt: claims.deviceKey } } : {}),
      })
        .setProtectedHeader({ alg: ACCESS_TOKEN.algorithm, kid: keyId, typ: "JWT" })
        .setSubject(claims.userId)
        .setIssuer(ACCESS_TOKEN.issuer)
        .setAudience(ACCESS_TOKEN.audience)
        .setIssuedAt(issuedAtSeconds)
        .setExpirationTime(expiresAtSeconds)
        .setJti(randomBytes(16).toString("base64url"))
        .sign(key);
      return { token, expiresAt: new Date(expiresAtSeconds * 1000) };
    },
    jwks: () => ({ keys: [publicJwk] }),
  };
}

/** An opaque refresh token: 256 random bits, base64url. */
export function newRefreshToken(): string {
  return randomBytes(32).toString("base64url");
}

/** Refresh tokens are stored only as sha256: 256 random bits need no slow hash. */
export function hashRefreshToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("base64url");
}

const REFRESH_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function isWellFormedRefreshToken(token: string): boolean {
  return REFRESH_TOKEN_PATTERN.test(token);
}
