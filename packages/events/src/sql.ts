/**
 * The slice of a Prisma client (or interactive transaction) the events package needs. Structural,
 * so any service's generated client fits without this package importing it.
 */
export interface SqlExecutor {
  $executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): PromiseLike<T>;
  /** A transaction begun with preferIndexScans's settings (`$transaction`'s option): the call has nothing left to set. */
  readonly prefersIndexScans?: boolean;
  /** A transaction begun with INDEX_SCAN_SETTINGS (every SqlPool transaction): walkIndexes has nothing left to set. */
  readonly walksIndexes?: boolean;
}

export interface SqlTransactionOptions {
  maxWait?: number;
  timeout?: number;
  /**
   * Begin with preferIndexScans's settings, in the same round trip as BEGIN, where the database can
   * (SqlPool); elsewhere (Prisma's client) this is ignored and preferIndexScans sets them with a
   * statement of its own. The queue-like claims ask for it: one round trip fewer before a relay's
   * publish.
   */
  preferIndexScans?: boolean;
  /**
   * A statement without parameters that opens the transaction, sent in BEGIN's round trip where
   * the database can (SqlPool, which prepares it once per connection and plans it once): `fn`
   * gets its rows as its second argument. Where it cannot (Prisma's client), `fn` gets undefined
   * and runs the statement itself. The relay's claim: one round trip fewer before every publish,
   * so on every hop of the saga. Under `preferIndexScans` it would be planned on every call again.
   */
  opening?: string;
  /**
   * Commit without waiting for the WAL to reach the disk (`synchronous_commit` off, this transaction
   * only; fsync stays on for everything else), set in BEGIN's round trip where the database can
   * (SqlPool); elsewhere the caller runs ASYNCHRONOUS_COMMIT itself. Only for a transaction whose
   * work a crash may undo because it is simply done again: the relay's marks (a mark lost is a
   * republish, which JetStream and the consumers drop as a duplicate). Never for an effect, an
   * event written to the outbox or a consumer's record of what it processed: a consumer acks after
   * its commit, so its commit must be on disk first.
   */
  asynchronousCommit?: boolean;
}

/** The settings of a transaction with `asynchronousCommit`. */
export const ASYNCHRONOUS_COMMIT_SETTINGS: Readonly<Record<string, string>> = { synchronous_commit: "off" };

/** Settings as one statement, for the rest of the transaction (where they cannot ride with BEGIN). */
const setConfig = (settings: Readonly<Record<string, string>>) =>
  `SELECT ${Object.entries(settings)
    .map(([name, value]) => `set_config('${name}', '${value}', true)`)
    .join(", ")}`;

/** `asynchronousCommit` as a statement, for a database that cannot set it in BEGIN's round trip (Prisma's client). */
export const ASYNCHRONOUS_COMMIT = setConfig(ASYNCHRONOUS_COMMIT_SETTINGS);

export interface SqlDatabase<Tx extends SqlExecutor = SqlExecutor> extends SqlExecutor {
  $transaction<R>(fn: (tx: Tx, opened?: unknown[]) => Promise<R>, options?: SqlTransactionOptions): Promise<R>;
}

/**
 * Transaction-scoped advisory locks on these keys, in one statement, taken in sorted order: every
 * holder of several takes them in one order, so two transactions cannot deadlock on them.
 * Released at commit or rollback.
 */
export async function lockKeys(tx: SqlExecutor, keys: readonly string[]): Promise<void> {
  await tx.$queryRawUnsafe(LOCK_KEYS_SQL, lockKeysParameter(keys));
}

/** lockKeys's statement: the keys ($1) locked in sorted order; one row, `n`, the number of keys. */
export const LOCK_KEYS_SQL = `SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) AS n FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k) AS sorted`;

/** lockKeys's parameter: each key once, sorted. */
export function lockKeysParameter(keys: readonly string[]): string[] {
  return [...new Set(keys)].sort();
}

/**
 * For the rest of this transaction, scans walk indexes in order: no bitmap scans, and no sequential
 * scan where an index serves. For queue-like claims (`… WHERE <not done> ORDER BY … LIMIT n FOR
 * UPDATE SKIP LOCKED`) on tables whose rows leave the queue by an UPDATE: every row that left
 * leaves a dead index entry behind until VACUUM, and a bitmap scan visits all of them on every
 * claim, while a plain index scan marks them dead the first time it meets them and skips them
 * afterwards. With statistics from when the table was small, the planner also joins the claimed
 * rows back to a sequential scan of the whole table. Measured on the transactions outbox after
 * 1,500 transfers (10,500 dead entries): 16–33 ms per empty claim, 2 ms for the first claim as an
 * index scan, 0.06 ms from then on. The services prepare their statements (statementName in
 * @vaultpay/service), and a cached generic plan knows neither the LIMIT nor these settings'
 * reasons: it walked the whole primary key instead (~8 ms per claim). So the claims are planned
 * for their values every time.
 */
export async function preferIndexScans(tx: SqlExecutor): Promise<void> {
  if (tx.prefersIndexScans === true) return;
  await tx.$queryRawUnsafe(PREFER_INDEX_SCANS);
}

/**
 * For the rest of this transaction, scans walk indexes (INDEX_SCAN_SETTINGS) and plans stay as the
 * connection has them: lookups by key, which need no plan made for their values. A no-op in a
 * SqlPool transaction, which begins so (with generic plans, see SqlPool); on Prisma's client (the
 * audit rebuild) one statement.
 */
export async function walkIndexes(tx: SqlExecutor): Promise<void> {
  if (tx.walksIndexes === true || tx.prefersIndexScans === true) return;
  await tx.$queryRawUnsafe(WALK_INDEXES);
}

/**
 * The planner settings that make scans walk indexes, for one transaction (see preferIndexScans).
 * SqlPool begins every transaction with them; preferIndexScans adds custom plans.
 */
export const INDEX_SCAN_SETTINGS: Readonly<Record<string, string>> = { enable_bitmapscan: "off", enable_seqscan: "off" };

/** What preferIndexScans adds to INDEX_SCAN_SETTINGS: plans made for each call's values. */
export const CUSTOM_PLAN_SETTINGS: Readonly<Record<string, string>> = { plan_cache_mode: "force_custom_plan" };

/**
 * What SqlPool adds to INDEX_SCAN_SETTINGS when a transaction does not prefer index scans (custom
 * plans): each prepared statement is planned once per connection, for any values (see SqlPool).
 */
export const GENERIC_PLAN_SETTINGS: Readonly<Record<string, string>> = { plan_cache_mode: "force_generic_plan" };

const PREFER_INDEX_SCANS = setConfig({ ...INDEX_SCAN_SETTINGS, ...CUSTOM_PLAN_SETTINGS });
const WALK_INDEXES = setConfig(INDEX_SCAN_SETTINGS);
