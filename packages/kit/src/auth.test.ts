import { generateKeyPairSync } from "node:crypto";
import { SignJWT, createLocalJWKSet, exportJWK, type JWK } from "jose";
import { describe, expect, it, vi } from "vitest";
import { ACCESS_TOKEN, createTokenVerifier, signGatewayAssertion, verifyGatewayAssertion } from "./auth.ts";

async function keyPair(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256" } as JWK };
}

function sign(
  privateKey: Parameters<SignJWT["sign"]>[0],
  kid: string,
  claims: Record<string, unknown> = {},
  expiresIn: string | number = "15m",
) {
  return new SignJWT({ role: "CUSTOMER", sid: "s1", did: "d1", ...claims })
    .setProtectedHeader({ alg: "ES256", kid })
    .setSubject("u1")
    .setJti("j1")
    .setIssuer(ACCESS_TOKEN.issuer)
    .setAudience(ACCESS_TOKEN.audience)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(privateKey);
}

describe("access token verification", async () => {
  const good = await keyPair("k1");
  const verify = createTokenVerifier(createLocalJWKSet({ keys: [good.publicJwk] }));

  it("returns the caller for a valid token and nobody for no header", async () => {
    expect(await verify(`Bearer ${await sign(good.privateKey, "k1")}`)).toEqual({
      userId: "u1",
      role: "CUSTOMER",
      sessionId: "s1",
      deviceId: "d1",
      tokenId: "j1",
    });
    expect(await verify(undefined)).toBeUndefined();
  });

  it("refuses expired, foreign, role-less and malformed tokens as UNAUTHENTICATED", async () => {
    const foreign = await keyPair("k1");
    await expect(verify(`Bearer ${await sign(good.privateKey, "k1", {}, "-1m")}`)).rejects.toMatchObject({
      code: "UNAUTHENTICATED",
      message: "Access token expired",
    });
    await expect(verify(`Bearer ${await sign(foreign.privateKey, "k1")}`)).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    await expect(verify(`Bearer ${await sign(good.privateKey, "k1", { role: "ROOT" })}`)).rejects.toMatchObject({
      code: "UNAUTHENTICATED",
    });
    await expect(verify(`Bearer ${await sign(good.privateKey, "k9")}`)).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
    await expect(verify("Basic dXNlcjpwYXNz")).rejects.toMatchObject({ code: "UNAUTHENTICATED" });
  });

  it("checks a token's signature once while it is fresh, and refuses it again once it expired", async () => {
    const jwks = createLocalJWKSet({ keys: [good.publicJwk] });
    let keyLookups = 0;
    const counting = createTokenVerifier((header, token) => {
      keyLookups++;
      return jwks(header, token);
    });
    const token = `Bearer ${await sign(good.privateKey, "k1", {}, Math.floor(Date.now() / 1000) + 2)}`;
    const first = await counting(token);
    expect(await counting(token)).toEqual(first);
    expect(keyLookups).toBe(1);
    // A different text (another token of the same caller) is verified on its own.
    await counting(`Bearer ${await sign(good.privateKey, "k1", { did: "d2" })}`);
    expect(keyLookups).toBe(2);
    vi.useFakeTimers({ now: Date.now() + 3_000 });
    try {
      await expect(counting(token)).rejects.toMatchObject({ code: "UNAUTHENTICATED", message: "Access token expired" });
    } finally {
      vi.useRealTimers();
    }
  });

  it("does not blame the caller when auth's keys cannot be fetched", async () => {
    const unreachable = createTokenVerifier("http://127.0.0.1:9/.well-known/jwks.json");
    const error = await unreachable(`Bearer ${await sign(good.privateKey, "k1")}`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as { code?: string }).code).not.toBe("UNAUTHENTICATED");
  });
});

describe("gateway assertion", () => {
  it("holds for the same secret and correlation id within a minute only", () => {
    const now = Date.now();
    const body = '{"query":"{ me { id } }"}';
    const request = { correlationId: "corr-1", body };
    const assertion = signGatewayAssertion("s".repeat(32), request, now);
    expect(verifyGatewayAssertion("s".repeat(32), assertion, request, now + 30_000)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(verifyGatewayAssertion("s".repeat(32), assertion, { ...request, correlationId: "corr-2" }, now)).toBeUndefined();
    expect(verifyGatewayAssertion("t".repeat(32), assertion, request, now)).toBeUndefined();
    expect(verifyGatewayAssertion("s".repeat(32), assertion, request, now + 61_000)).toBeUndefined();
    expect(verifyGatewayAssertion("s".repeat(32), undefined, request, now)).toBeUndefined();
    expect(verifyGatewayAssertion("s".repeat(32), "garbage", request, now)).toBeUndefined();
    // The body is covered: a captured header does not carry another query.
    expect(verifyGatewayAssertion("s".repeat(32), assertion, { ...request, body: '{"query":"{ users { id } }"}' }, now)).toBeUndefined();
    expect(verifyGatewayAssertion("s".repeat(32), assertion, { ...request, body: `${body} ` }, now)).toBeUndefined();

    const withKey = signGatewayAssertion("s".repeat(32), { ...request, provenDeviceKey: "k".repeat(43) }, now);
    expect(verifyGatewayAssertion("s".repeat(32), withKey, { ...request, provenDeviceKey: "k".repeat(43) }, now)).toMatch(
      /^[A-Za-z0-9_-]{22}$/,
    );
    expect(verifyGatewayAssertion("s".repeat(32), withKey, { ...request, provenDeviceKey: "j".repeat(43) }, now)).toBeUndefined();
    expect(verifyGatewayAssertion("s".repeat(32), withKey, request, now)).toBeUndefined();
    expect(verifyGatewayAssertion("s".repeat(32), assertion, { ...request, provenDeviceKey: "k".repeat(43) }, now)).toBeUndefined();
  });

  it("carries a fresh nonce under the MAC, which the verifier returns for the replay check", () => {
    const now = Date.now();
    const request = { correlationId: "corr-1", body: '{"query":"{ me { id } }"}' };
    const first = signGatewayAssertion("s".repeat(32), request, now);
    const second = signGatewayAssertion("s".repeat(32), request, now);
    expect(first).not.toBe(second);
    const [seconds, nonce, mac] = first.split(".");
    expect(verifyGatewayAssertion("s".repeat(32), first, request, now)).toBe(nonce);
    expect(verifyGatewayAssertion("s".repeat(32), second, request, now)).toBe(second.split(".")[1]);
    // Another nonce (to pass the replay check) under the same MAC is refused.
    expect(verifyGatewayAssertion("s".repeat(32), `${seconds}.${second.split(".")[1]}.${mac}`, request, now)).toBeUndefined();
    expect(verifyGatewayAssertion("s".repeat(32), `${seconds}.${mac}`, request, now)).toBeUndefined();
    expect(verifyGatewayAssertion("s".repeat(32), `${first}.extra`, request, now)).toBeUndefined();
  });
});
