/** DPoP proofs (RFC 9449) as the gateway checks them: every way a proof can be wrong is refused. */
import { SignJWT, exportJWK, generateKeyPair } from "jose";
import { describe, expect, it } from "vitest";
import { DomainError } from "./errors.ts";
import { accessTokenHash, createDpopDevice, provenDeviceId, verifyDpopProof, type DpopCheck } from "./dpop.ts";

const HTU = "http://127.0.0.1:4000/graphql";

function checker(overrides: Partial<DpopCheck> = {}): DpopCheck {
  const seen = new Set<string>();
  return {
    htm: "POST",
    htu: HTU,
    rememberJti: async (key) => {
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    },
    ...overrides,
  };
}

async function refusal(promise: Promise<unknown>): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  expect((error as DomainError).code).toBe("UNAUTHENTICATED");
  expect((error as DomainError).details).toEqual({ reason: "DPOP_PROOF_INVALID" });
  return error as DomainError;
}

describe("DPoP proofs", () => {
  it("accepts a fresh proof for this method and URL and names its key's thumbprint", async () => {
    const device = await createDpopDevice();
    const proof = await device.proof({ htm: "POST", htu: `${HTU}?x=1`, accessToken: "token-1" });
    await expect(verifyDpopProof(proof, checker({ accessToken: "token-1" }))).resolves.toEqual({ jkt: device.jkt });
    expect(device.jkt).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(provenDeviceId(device.jkt)).toBe(`jkt:${device.jkt}`);
  });

  it("refuses a replayed jti, another method or URL, a stale or future iat, a missing or wrong ath", async () => {
    const device = await createDpopDevice();
    const check = checker();
    const once = await device.proof({ htm: "POST", htu: HTU });
    await verifyDpopProof(once, check);
    expect((await refusal(verifyDpopProof(once, check))).message).toContain("already used");
    await refusal(verifyDpopProof(await device.proof({ htm: "GET", htu: HTU }), check));
    await refusal(verifyDpopProof(await device.proof({ htm: "POST", htu: "http://evil.example/graphql" }), check));
    const now = Math.floor(Date.now() / 1000);
    await refusal(verifyDpopProof(await device.proof({ htm: "POST", htu: HTU, iatSeconds: now - 120 }), check));
    await refusal(verifyDpopProof(await device.proof({ htm: "POST", htu: HTU, iatSeconds: now + 120 }), check));
    const bound = checker({ accessToken: "the-token" });
    await refusal(verifyDpopProof(await device.proof({ htm: "POST", htu: HTU }), bound));
    await refusal(verifyDpopProof(await device.proof({ htm: "POST", htu: HTU, accessToken: "another-token" }), bound));
    expect(accessTokenHash("the-token")).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("refuses a proof signed by another key than its jwk header, a private jwk, a wrong typ and garbage", async () => {
    const device = await createDpopDevice();
    const other = await generateKeyPair("ES256", { extractable: true });
    const now = Math.floor(Date.now() / 1000);
    const claims = { htm: "POST", htu: HTU, iat: now, jti: "jti-12345678" };
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ typ: "dpop+jwt", alg: "ES256", jwk: device.publicJwk })
      .sign(other.privateKey);
    await refusal(verifyDpopProof(forged, checker()));
    const privateJwk = await exportJWK(other.privateKey);
    const leaky = await new SignJWT(claims).setProtectedHeader({ typ: "dpop+jwt", alg: "ES256", jwk: privateJwk }).sign(other.privateKey);
    await refusal(verifyDpopProof(leaky, checker()));
    const publicJwk = await exportJWK(other.publicKey);
    const wrongType = await new SignJWT(claims).setProtectedHeader({ typ: "JWT", alg: "ES256", jwk: publicJwk }).sign(other.privateKey);
    await refusal(verifyDpopProof(wrongType, checker()));
    await refusal(verifyDpopProof("not.a.jwt", checker()));
    await refusal(verifyDpopProof("", checker()));
  });

  it("checks every proof's signature against its header's key, also once that key is known from earlier proofs", async () => {
    const device = await createDpopDevice();
    const check = checker();
    for (let request = 0; request < 3; request++) {
      await expect(verifyDpopProof(await device.proof({ htm: "POST", htu: HTU }), check)).resolves.toEqual({ jkt: device.jkt });
    }
    // The device's key is known by now: a proof naming it but signed by another key is still refused.
    const other = await generateKeyPair("ES256");
    const claims = { htm: "POST", htu: HTU, iat: Math.floor(Date.now() / 1000), jti: "jti-forged-after" };
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ typ: "dpop+jwt", alg: "ES256", jwk: device.publicJwk })
      .sign(other.privateKey);
    await refusal(verifyDpopProof(forged, check));
    // The same key under another algorithm than the one it was first seen with is its own case: refused.
    const [, payload, signature] = (await device.proof({ htm: "POST", htu: HTU })).split(".");
    const header = Buffer.from(JSON.stringify({ typ: "dpop+jwt", alg: "ES384", jwk: device.publicJwk })).toString("base64url");
    await refusal(verifyDpopProof(`${header}.${payload}.${signature}`, check));
    // An algorithm outside the list, with a key it could not use anyway.
    const none = Buffer.from(JSON.stringify({ typ: "dpop+jwt", alg: "HS256", jwk: device.publicJwk })).toString("base64url");
    await refusal(verifyDpopProof(`${none}.${payload}.${signature}`, check));
  });
});
