/**
 * Re-encrypts account numbers sealed with an old key id under the active one, after a key rotation
 * (add the new key to ENCRYPTION_KEYS, make it ENCRYPTION_ACTIVE_KEY_ID, restart, run this, then
 * retire the old key). Batched, each batch in its own transaction with its rows locked (SKIP
 * LOCKED, so two runs share the work); idempotent: a second run finds nothing to do. The blind
 * index does not change (its key never rotates silently).
 *
 *   DATABASE_URL=… ENCRYPTION_KEYS=… ENCRYPTION_ACTIVE_KEY_ID=… BLIND_INDEX_KEY=… \
 *     node subgraphs/accounts/src/reencrypt.ts [--batch-size 500]
 */
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { decrypt, encrypt, keyIdOf, keyRingEnvSchema, keyRingFrom, type KeyRing } from "@vaultpay/crypto";
import { loadConfig } from "@vaultpay/kit";
import { ACCOUNT_NUMBER_CONTEXT } from "./accounts.ts";
import { createDb, type Db } from "./db.ts";
import { lockNumbersToReencrypt, updateSealedNumber } from "./store.ts";

export const REENCRYPT_MAX_BATCH = 5_000;
/** A run stops after this many batches even if rows keep appearing (they would be new, already active-sealed). */
const MAX_BATCHES = 1_000_000;

export async function reencryptAccountNumbers(
  db: Db,
  ring: KeyRing,
  options: { batchSize?: number } = {},
): Promise<{ reencrypted: number }> {
  const batchSize = Math.min(Math.max(options.batchSize ?? 500, 1), REENCRYPT_MAX_BATCH);
  let reencrypted = 0;
  for (let batch = 0; batch < MAX_BATCHES; batch++) {
    const done = await db.$transaction(
      async (tx) => {
        const rows = await lockNumbersToReencrypt(tx, ring.activeKeyId, batchSize);
        for (const row of rows) {
          const sealed = encrypt(ring, decrypt(ring, row.numberEncrypted, ACCOUNT_NUMBER_CONTEXT), ACCOUNT_NUMBER_CONTEXT);
          await updateSealedNumber(tx, row.id, sealed, keyIdOf(sealed)!);
        }
        return rows.length;
      },
      { timeout: 120_000, maxWait: 10_000 },
    );
    reencrypted += done;
    if (done < batchSize) return { reencrypted };
  }
  return { reencrypted };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const config = loadConfig(keyRingEnvSchema.extend({ DATABASE_URL: z.string().url() }));
  const batchFlag = process.argv.indexOf("--batch-size");
  const batchSize = batchFlag > 0 ? Number(process.argv[batchFlag + 1]) : undefined;
  const db = createDb(config.DATABASE_URL);
  try {
    const { reencrypted } = await reencryptAccountNumbers(db, keyRingFrom(config), { batchSize });
    process.stdout.write(`re-encrypted ${reencrypted} account number(s) under key ${config.ENCRYPTION_ACTIVE_KEY_ID}\n`);
  } finally {
    await db.$disconnect();
  }
}
