import { generateKeyPairSync, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

/**
 * Development secrets: generated on this machine at first start and kept in the data folder
 * (git-ignored, mode 600), never committed. Production passes real values through the environment.
 */
export interface DevSecrets {
  GATEWAY_SECRET: string;
  /** ES256 private key as a JWK (JSON), with its key id. */
  JWT_PRIVATE_JWK: string;
  JWT_KEY_ID: string;
  ENCRYPTION_KEYS: string;
  ENCRYPTION_ACTIVE_KEY_ID: string;
  BLIND_INDEX_KEY: string;
  OTP_PEPPER: string;
}

export function generateDevSecrets(): DevSecrets {
  const keyId = `dev-${randomUUID().slice(0, 8)}`;
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    GATEWAY_SECRET: randomBytes(32).toString("base64url"),
    JWT_PRIVATE_JWK: JSON.stringify({ ...privateKey.export({ format: "jwk" }), kid: keyId, alg: "ES256", use: "sig" }),
    JWT_KEY_ID: keyId,
    ENCRYPTION_KEYS: `k1:${randomBytes(32).toString("base64")}`,
    ENCRYPTION_ACTIVE_KEY_ID: "k1",
    BLIND_INDEX_KEY: randomBytes(32).toString("base64"),
    OTP_PEPPER: randomBytes(32).toString("base64url"),
  };
}

/** Reads the data folder's secrets, creating them on first start. */
export function loadOrCreateDevSecrets(dataDir: string): DevSecrets {
  const file = path.join(dataDir, "dev-secrets.json");
  if (existsSync(file)) {
    const stored = JSON.parse(readFileSync(file, "utf8")) as Partial<DevSecrets>;
    // Secrets added by a newer version are generated; existing ones are kept (data depends on them).
    const complete = { ...generateDevSecrets(), ...stored };
    if (Object.keys(stored).length !== Object.keys(complete).length)
      writeFileSync(file, JSON.stringify(complete, null, 2), { mode: 0o600 });
    return complete;
  }
  mkdirSync(dataDir, { recursive: true });
  const secrets = generateDevSecrets();
  writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600 });
  return secrets;
}

/** Which secrets each process gets: only what it needs. */
export const SECRETS_BY_PROCESS: Record<string, readonly (keyof DevSecrets)[]> = {
  gateway: ["GATEWAY_SECRET"],
  auth: ["GATEWAY_SECRET", "JWT_PRIVATE_JWK", "JWT_KEY_ID", "ENCRYPTION_KEYS", "ENCRYPTION_ACTIVE_KEY_ID", "BLIND_INDEX_KEY", "OTP_PEPPER"],
  accounts: ["GATEWAY_SECRET", "ENCRYPTION_KEYS", "ENCRYPTION_ACTIVE_KEY_ID", "BLIND_INDEX_KEY"],
  transactions: ["GATEWAY_SECRET", "BLIND_INDEX_KEY"],
  fraud: ["GATEWAY_SECRET"],
  audit: ["GATEWAY_SECRET"],
};
