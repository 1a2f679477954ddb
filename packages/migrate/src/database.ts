import { randomUUID } from "node:crypto";
import pg from "pg";
import type { ServiceName } from "./services.ts";

/** The same server and credentials as `url`, another database. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

function databaseName(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  if (!name) throw new Error(`no database name in ${redact(url)}`);
  return name;
}

/** One database per service on the given server: vaultpay_<service>. */
export function serviceDatabaseUrl(serverUrl: string, service: ServiceName): string {
  return withDatabase(serverUrl, `vaultpay_${service}`);
}

/** For messages: the URL without its password. */
export function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function pgErrorCode(error: unknown): unknown {
  return error instanceof Error && "code" in error ? error.code : undefined;
}

/** Runs `sql` on the server's maintenance database, which exists on every PostgreSQL server. */
async function onServer(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: withDatabase(url, "postgres") });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Whether the database of `url` exists, found by connecting to it (no rights needed beyond that). */
export async function databaseExists(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
  } catch (error) {
    if (pgErrorCode(error) === "3D000") return false; // invalid_catalog_name: no such database
    throw new Error(`cannot connect to ${redact(url)}: ${(error as Error).message}`, { cause: error });
  }
  await client.end();
  return true;
}

/**
 * Creates the database of `databaseUrl` if it does not exist; returns whether it created it.
 * Safe when several processes race: the loser's CREATE fails as duplicate_database, or as a
 * unique violation on pg_database when both passed the existence check at once.
 */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  if (await databaseExists(databaseUrl)) return false;
  try {
    await onServer(databaseUrl, `CREATE DATABASE ${quoteIdent(databaseName(databaseUrl))}`);
    return true;
  } catch (error) {
    const code = pgErrorCode(error);
    if (code === "42P04" || code === "23505") return false;
    throw error;
  }
}

/** Drops the database of `databaseUrl` if it exists, closing its other connections first. */
export async function dropDatabase(databaseUrl: string): Promise<void> {
  await onServer(databaseUrl, `DROP DATABASE IF EXISTS ${quoteIdent(databaseName(databaseUrl))} WITH (FORCE)`);
}

/** Creates an empty database with a unique name on the server of `serverUrl`; returns its URL. */
export async function createTemporaryDatabase(serverUrl: string, prefix: string): Promise<string> {
  const url = withDatabase(serverUrl, `${prefix}_${randomUUID().replaceAll("-", "")}`);
  await onServer(url, `CREATE DATABASE ${quoteIdent(databaseName(url))}`);
  return url;
}
