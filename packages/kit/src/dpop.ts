/**
 * DPoP (RFC 9449) device binding, the parts every service shares. A device is a key pair its
 * client holds; the gateway verifies a proof of it on each request and vouches for the key's
 * thumbprint (`jkt`) to subgraphs in its signed assertion. Subgraphs never see the proof.
 */
import { createHash, randomUUID } from "node:crypto";
import {
  SignJWT,
  calculateJwkThumbprint,
  decodeProtectedHeader,
  errors as joseErrors,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  type CryptoKey,
  type JWK,
  type KeyObject,
} from "jose";
import { DomainError } from "./errors.ts";

/** The request header carrying a proof (over graphql-ws: `connectionParams.dpop`). */
export const DPOP_HEADER = "dpop";
/** Where the gateway tells subgraphs which device key a request proved; covered by its assertion. */
export const PROVEN_DEVICE_KEY_HEADER = "x-vaultpay-device-key";
/** A proof older than this is refused (its jti is remembered at least this long). */
export const DPOP_PROOF_MAX_AGE_SECONDS = 60;
/** How far ahead of our clock a proof's iat may be (client clocks drift). */
export const DPOP_PROOF_MAX_FUTURE_SECONDS = 10;
/** Asymmetric algorithms accepted for proofs (RFC 9449 forbids none and MACs). */
export const DPOP_ALGORITHMS = ["ES256", "ES384", "EdDSA", "RS256", "PS256"] as const;

const JKT_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/**
 * The device id of a proven device: its key's JWK thumbprint (RFC 7638, SHA-256, base64url), so
 * no client can claim it without the key. Fits the device-id pattern (A-Z a-z 0-9 . _ : -).
 */
export function provenDeviceId(jkt: string): string {
  return `jkt:${jkt}`;
}

/** Whether a device id has the shape of a proven one (clients may not claim such ids). */
export function looksProven(deviceId: string): boolean {
  return deviceId.startsWith("jkt:");
}

export function isJkt(value: string | undefined): value is string {
  return value !== undefined && JKT_PATTERN.test(value);
}

/** `ath`: base64url(sha256(access token)), binding a proof to the token it travels with. */
export function accessTokenHash(accessToken: string): string {
  return createHash("sha256").update(accessToken, "ascii").digest("base64url");
}

/** The URL a proof's htu is compared with: scheme, host and path, without query or fragment. */
export function normalizeHtu(url: string): string | undefined {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host.toLowerCase()}${parsed.pathname}`;
  } catch {
    return undefined;
  }
}

export interface DpopCheck {
  /** The HTTP method of the request (GET for a graphql-ws connection's upgrade). */
  htm: string;
  /** The http(s) URL of /graphql the client addressed. */
  htu: string;
  /** The access token sent with the proof, if any: the proof's ath must hash it. */
  accessToken?: string | undefined;
  nowMs?: number;
  /** Remembers a jti for ttlSeconds; false when it was already seen (a replayed proof). */
  rememberJti: (key: string, ttlSeconds: number) => Promise<boolean>;
}

/**
 * Public keys of recent proofs, imported, with their thumbprints, by the exact header they came in
 * (algorithm and JWK as sent): a device sends the same key with every request, and importing it
 * and hashing its thumbprint again each time was 60 % of a proof's check in the gateway's profile
 * (~0.18 of 0.3 ms; bench/gateway-results.md). Least recently used out first past the bound, so
 * keys sent once cannot grow it.
 */
const PROOF_KEYS_MAX = 10_000;
/** A proof header's key, imported for its alg, and the key's thumbprint. */
interface ProofKey {
  key: CryptoKey | KeyObject | Uint8Array;
  jkt: string;
}
const proofKeys = new Map<string, Promise<ProofKey>>();

function proofKey(jwk: JWK, alg: string): Promise<ProofKey> {
  const cacheKey = `${alg} ${JSON.stringify(jwk)}`;
  let entry = proofKeys.get(cacheKey);
  if (entry !== undefined) {
    proofKeys.delete(cacheKey);
  } else {
    entry = Promise.all([importJWK(jwk, alg), calculateJwkThumbprint(jwk, "sha256")]).then(([key, jkt]) => ({ key, jkt }));
    // A key that cannot be imported is not kept: the next proof with it is refused the same way.
    const made = entry;
    made.catch(() => {
      if (proofKeys.get(cacheKey) === made) proofKeys.delete(cacheKey);
    });
    if (proofKeys.size >= PROOF_KEYS_MAX) proofKeys.delete(proofKeys.keys().next().value!);
  }
  proofKeys.set(cacheKey, entry);
  return entry;
}

function invalidProof(why: string): DomainError {
  return new DomainError("UNAUTHENTICATED", `DPoP proof is not valid: ${why}`, { reason: "DPOP_PROOF_INVALID" });
}

/**
 * Verifies a DPoP proof per RFC 9449 §4.3: a JWT of type dpop+jwt signed by the public key in its
 * own `jwk` header, for this method and URL, fresh, never seen before, and bound to the access
 * token when one is sent. Returns the key's thumbprint, or throws UNAUTHENTICATED with
 * `extensions.reason = DPOP_PROOF_INVALID`.
 */
export async function verifyDpopProof(proof: string, check: DpopCheck): Promise<{ jkt: string }> {
  if (proof.length > 8192 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(proof)) throw invalidProof("not a compact JWT");
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(proof);
  } catch {
    throw invalidProof("unreadable header");
  }
  const jwk = header.jwk as (JWK & { d?: unknown }) | undefined;
  if (!jwk || typeof jwk !== "object") throw invalidProof("no jwk header");
  if ("d" in jwk || "k" in jwk) throw invalidProof("the jwk header must be a public key");
  const alg = header.alg;
  if (typeof alg !== "string" || !(DPOP_ALGORITHMS as readonly string[]).includes(alg))
    throw invalidProof("bad signature, type or algorithm");
  let key: ProofKey;
  try {
    key = await proofKey(jwk, alg);
  } catch {
    throw invalidProof("the jwk header is not a usable public key for its alg");
  }
  // The key the header carries (RFC 9449 §4.3 step 8), imported for the header's alg.
  if ((key.key as { type?: unknown }).type !== "public") throw invalidProof("the jwk header must be a public key");
  let payload: Record<string, unknown>;
  try {
    ({ payload } = await jwtVerify(proof, key.key, { typ: "dpop+jwt", algorithms: [...DPOP_ALGORITHMS] }));
  } catch (error) {
    if (error instanceof joseErrors.JOSEError) throw invalidProof("bad signature, type or algorithm");
    throw error;
  }
  if (payload.htm !== check.htm) throw invalidProof(`htm must be ${check.htm}`);
  const htu = typeof payload.htu === "string" ? normalizeHtu(payload.htu) : undefined;
  if (!htu || htu !== normalizeHtu(check.htu)) throw invalidProof(`htu must be ${normalizeHtu(check.htu)}`);
  const nowSeconds = (check.nowMs ?? Date.now()) / 1000;
  if (
    typeof payload.iat !== "number" ||
    payload.iat < nowSeconds - DPOP_PROOF_MAX_AGE_SECONDS ||
    payload.iat > nowSeconds + DPOP_PROOF_MAX_FUTURE_SECONDS
  ) {
    throw invalidProof(`iat must be within ${DPOP_PROOF_MAX_AGE_SECONDS} s of now; make a fresh proof for each request`);
  }
  if (typeof payload.jti !== "string" || payload.jti.length < 8 || payload.jti.length > 128)
    throw invalidProof("jti must be 8–128 characters");
  if (check.accessToken !== undefined && payload.ath !== accessTokenHash(check.accessToken))
    throw invalidProof("ath must be the SHA-256 of the access token");
  const { jkt } = key;
  // Remembered past the proof's whole acceptable life, so it can never be accepted twice.
  if (!(await check.rememberJti(`${jkt}:${payload.jti}`, DPOP_PROOF_MAX_AGE_SECONDS + DPOP_PROOF_MAX_FUTURE_SECONDS + 5))) {
    throw invalidProof("this proof was already used (jti replayed)");
  }
  return { jkt };
}

/** The refusal of a device-bound token sent without a proof of its key. */
export function proofRequired(): DomainError {
  return new DomainError("UNAUTHENTICATED", "This session is bound to a device key: send a fresh DPoP proof of it with every request", {
    reason: "DPOP_PROOF_REQUIRED",
  });
}

/** A device as a client holds it: a key pair that never leaves it, and proofs made with it. */
export interface DpopDevice {
  /** The key's thumbprint: the device is registered as provenDeviceId(jkt). */
  jkt: string;
  publicJwk: JWK;
  /** A fresh proof for one request (a new jti each time). */
  proof(request: { htm: string; htu: string; accessToken?: string; iatSeconds?: number; jti?: string }): Promise<string>;
}

/**
 * The reference client side of RFC 9449, in Node (tests, scripts, a server-side client): an ES256
 * key pair and proofs signed with it. A browser does the same with WebCrypto and a non-extractable
 * key kept in IndexedDB (README "Device binding").
 */
export async function createDpopDevice(): Promise<DpopDevice> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const exported = await exportJWK(publicKey);
  const publicJwk: JWK = { kty: exported.kty!, crv: exported.crv!, x: exported.x!, y: exported.y! };
  const jkt = await calculateJwkThumbprint(publicJwk, "sha256");
  return {
    jkt,
    publicJwk,
    proof: ({ htm, htu, accessToken, iatSeconds, jti }) =>
      new SignJWT({ htm, htu, ...(accessToken ? { ath: accessTokenHash(accessToken) } : {}) })
        .setProtectedHeader({ typ: "dpop+jwt", alg: "ES256", jwk: publicJwk })
        .setIssuedAt(iatSeconds ?? Math.floor(Date.now() / 1000))
        .setJti(jti ?? randomUUID())
        .sign(privateKey),
  };
}
