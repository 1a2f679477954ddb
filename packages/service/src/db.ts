/**
 * Options of the pg driver adapter every service's Prisma client runs on: the service's own
 * statements prepared once per connection instead of parsed and planned on every call.
 */
import { createHash } from "node:crypto";
import { PrismaPg } from "@prisma/adapter-pg";

/** Bounds the prepared statements each connection keeps on the server (distinct SQL texts named). */
const MAX_NAMED_STATEMENTS = 512;
const names = new Map<string, string>();

/**
 * A name for a statement the services wrote themselves (raw SQL, fixed text whatever the batch:
 * arrays travel as one parameter), so node-postgres prepares it once per connection and
 * PostgreSQL can reuse its plan; "" (unnamed, as before) for Prisma's own queries, whose text
 * varies with their arguments, and past the bound. Measured with pg_stat_statements' planning
 * time: ~2 ms of PostgreSQL's ~10 ms per transfer went to planning the same statements again.
 * Behind a connection pooler in transaction mode this needs one that supports prepared
 * statements (PgBouncer ≥ 1.21 with max_prepared_statements).
 */
export function statementName(sql: string): string {
  const known = names.get(sql);
  if (known !== undefined) return known;
  if (names.size >= MAX_NAMED_STATEMENTS || sql.includes('"public".')) return "";
  const name = `vp_${createHash("sha256").update(sql).digest("base64url").slice(0, 24)}`;
  names.set(sql, name);
  return name;
}

/**
 * Interactive transactions' limits for every service's Prisma client (and SqlPool). Prisma's defaults (2 s to get
 * a connection, 5 s to finish) turn a busy moment into INTERNAL errors; these still bound a
 * transaction, with room for load.
 */
export const TRANSACTION_OPTIONS = { maxWait: 10_000, timeout: 20_000 } as const;

/**
 * How long a pooled connection may stay idle before it is closed: five minutes, as Prisma's own
 * engine kept them, where node-postgres closes them after 10 s. A pool hands out its most recently
 * used connection first, so under a steady load the rest sat idle past 10 s, closed, and were
 * opened again by the next burst: a new server process with empty caches and every prepared
 * statement to prepare again, on the request that waited for it. In the saga benchmark (open
 * loop at 120/s) the services' connections went 38 → 25 within the 30 s, and each pause between
 * phases closed all but 8 of them; with 5 min none closed (bench/saga-results.md, 2026-12-07).
 */
export const POOL_IDLE_TIMEOUT_MS = 300_000;

/** Settings every pool of a service's database shares: its Prisma client's (prismaClientOptions) and SqlPool's. */
export function pgPoolConfig(connectionString: string) {
  return { connectionString, idleTimeoutMillis: POOL_IDLE_TIMEOUT_MS };
}

const PG_ADAPTER_OPTIONS = { statementNameGenerator: (query: { sql: string }) => statementName(query.sql) };

/**
 * The options of every service's Prisma client (`new PrismaClient(prismaClientOptions(url))` in its
 * db.ts): Prisma 7's pg driver adapter, no engine binary, on the pool settings and statement names
 * above, and the transactions' limits.
 */
export function prismaClientOptions(databaseUrl: string) {
  return { adapter: new PrismaPg(pgPoolConfig(databaseUrl), PG_ADAPTER_OPTIONS), transactionOptions: TRANSACTION_OPTIONS };
}
