/**
 * This browser as a device (README "Device binding"): one ECDSA P-256 key pair made by WebCrypto
 * with a non-extractable private key, kept in IndexedDB, so script on the page can sign with it but
 * nobody can copy it out. Every request carries a fresh DPoP proof (RFC 9449) signed with it.
 */

const DB_NAME = "vaultpay-device";
const STORE = "keys";
const KEY_ID = "dpop";
const LABEL_KEY = "vaultpay.deviceLabel";

export interface Device {
  /** The label sent as `deviceId` (the server names the device by its key: jkt:<thumbprint>). */
  label: string;
  proof(request: { htm: "POST" | "GET"; htu: string; accessToken?: string }): Promise<string>;
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function idb<T>(db: IDBDatabase, mode: IDBTransactionMode, act: (store: IDBObjectStore) => IDBRequest): Promise<T> {
  return new Promise((resolve, reject) => {
    const request = act(db.transaction(STORE, mode).objectStore(STORE));
    request.onsuccess = () => resolve(request.result as T);
    request.onerror = () => reject(request.error);
  });
}

const encoder = new TextEncoder();

function base64url(bytes: ArrayBuffer | Uint8Array): string {
  const array = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let binary = "";
  for (const byte of array) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

const base64urlJson = (value: unknown) => base64url(encoder.encode(JSON.stringify(value)));

async function sha256(text: string): Promise<string> {
  return base64url(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

async function loadOrCreateKeyPair(): Promise<CryptoKeyPair> {
  const db = await openDb();
  try {
    const stored = await idb<CryptoKeyPair | undefined>(db, "readonly", (store) => store.get(KEY_ID));
    if (stored) return stored;
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    await idb(db, "readwrite", (store) => store.put(pair, KEY_ID));
    return pair;
  } finally {
    db.close();
  }
}

function deviceLabel(): string {
  let label = localStorage.getItem(LABEL_KEY);
  if (!label) {
    label = `web-${crypto.randomUUID().slice(0, 8)}`;
    localStorage.setItem(LABEL_KEY, label);
  }
  return label;
}

let device: Promise<Device> | undefined;

/** This browser's device, made once and then read back from IndexedDB. */
export function thisDevice(): Promise<Device> {
  device ??= (async () => {
    const pair = await loadOrCreateKeyPair();
    // The public half is always exportable; only its public members go into proofs.
    const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", pair.publicKey);
    const header = base64urlJson({ typ: "dpop+jwt", alg: "ES256", jwk: { kty, crv, x, y } });
    return {
      label: deviceLabel(),
      async proof({ htm, htu, accessToken }) {
        const claims: Record<string, unknown> = { htm, htu, iat: Math.floor(Date.now() / 1000), jti: crypto.randomUUID() };
        if (accessToken) claims.ath = await sha256(accessToken);
        const input = `${header}.${base64urlJson(claims)}`;
        // WebCrypto's ECDSA signature is r||s, exactly the JWS ES256 encoding.
        const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, pair.privateKey, encoder.encode(input));
        return `${input}.${base64url(signature)}`;
      },
    };
  })();
  return device;
}
