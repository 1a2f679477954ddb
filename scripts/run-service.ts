/**
 * Runs one VaultPay process with the development secrets from the data folder, for containers
 * (docker-compose.yml): `node scripts/run-service.ts <auth|accounts|…|gateway>`.
 * `--init` only creates the secrets (the compose file's one-shot step, so replicas never race).
 * Variables already set in the environment win: production passes its own and never uses this.
 */
import path from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT, SECRETS_BY_PROCESS, loadOrCreateDevSecrets, processEntry, type ProcessName } from "@vaultpay/stack";

const name = process.argv[2] ?? "";
const dataDir = path.resolve(process.env.VAULTPAY_DATA_DIR ?? path.join(REPO_ROOT, ".data"));
if (name === "--init") {
  loadOrCreateDevSecrets(dataDir);
  console.log(`development secrets ready in ${dataDir}`);
} else {
  const wanted = SECRETS_BY_PROCESS[name];
  if (!wanted) {
    console.error(`usage: run-service.ts <${Object.keys(SECRETS_BY_PROCESS).join("|")}> | --init`);
    process.exit(2);
  }
  if (process.env.NODE_ENV === "production") {
    console.error("run-service.ts hands out development secrets; in production set the variables yourself");
    process.exit(78);
  }
  const secrets = loadOrCreateDevSecrets(dataDir);
  // A key given as KEY_FILE wins too (kit reads it; setting KEY as well would be refused).
  for (const key of wanted) if (process.env[`${key}_FILE`] === undefined) process.env[key] ??= secrets[key];
  await import(pathToFileURL(path.join(REPO_ROOT, processEntry(name as ProcessName))).href);
}
